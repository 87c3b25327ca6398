"""The inside of a mouth that opens wider than the reference photo's, drawn by rule: a dark cavity, the upper teeth
under the upper lip and the tongue's tint above the lower lip.

A renderer trained under L1 cannot learn the upper teeth: their band is 2-5 px tall in a 256 crop and the
landmarks that place it jitter by about as much, so the loss's optimum there is the median of lip, teeth and
cavity, a lip-pink band under the upper lip. MediaPipe reads that band as lip: the embedded corpus's held-out
person, rendered from her true landmarks, opened to 0.036 inter-ocular units against her true video's 0.088 (0.052
with the rule). The rule draws the interior as the corpus's generator does
(``datamodules.synthetic.faces.render_frame``) and as a real mouth looks, within the target's inner lips, in the
light of the reference's skin. Where the reference's own lips part, its cavity and teeth are the warp's to move,
and the rule fades out.
"""

import torch

from lightning_modules.nets.lip_warp import LIP_EDGES

INNER_CORNERS, INNER_MIDDLE = (60, 64), (62, 66)
PHILTRUM = (33, 51)  # iBUG points bounding the skin between the nose and the upper lip
# each part's colour from the skin's (part_colour): a floor, a brightness over the skin's, the share of its cast kept;
# teeth stay bright on a dark skin, and a grey photo gets a grey mouth
CAVITY, TEETH, TONGUE = (0.0, 0.15, 1.5), (0.45, 0.55, 0.2), (0.0, 0.35, 1.5)
OPEN_REFERENCE = 0.1  # a reference whose inner lips part by this share of their width shows its own interior
TEETH_SHARE, TEETH_MOST = 0.25, 0.02  # the teeth's band: this share of the gap, at most this share of the crop
TONGUE_SHARE, TONGUE_WEIGHT = 0.35, 0.6  # the tongue's tint over this share of the gap above the lower lip


def inner_gap(landmarks: torch.Tensor) -> torch.Tensor:
    """``[B]``: the inner lips' gap at their middle (points 62-66) of landmarks ``[B, 68, >=2]``, crop pixels."""
    return (landmarks[:, INNER_MIDDLE[1], :2] - landmarks[:, INNER_MIDDLE[0], :2]).float().norm(dim=-1)


def skin_colour(reference: torch.Tensor, reference_landmarks: torch.Tensor) -> torch.Tensor:
    """``[B, 3]``: the mean colour of ``reference`` ``[B, 3, S, S]`` over a patch of skin between its nose and its
    upper lip (a box around the middle of points 33 and 51, half their distance tall and as wide again)."""
    points = reference_landmarks[:, list(PHILTRUM), :2].float()
    middle = points.mean(1)
    half = ((points[:, 1, 1] - points[:, 0, 1]).abs() / 4).clamp_min(1.0)
    size = reference.shape[-1]
    axis = torch.arange(size, dtype=torch.float32, device=reference.device)
    rows = ((axis[None] - middle[:, 1:]).abs() <= half[:, None]).float()  # [B, S]
    columns = ((axis[None] - middle[:, :1]).abs() <= 2 * half[:, None]).float()
    weights = rows[:, :, None] * columns[:, None, :]  # [B, S, S]
    total = weights.sum((1, 2)).clamp_min(1.0)
    return (reference.float() * weights[:, None]).sum((2, 3)) / total[:, None]


def part_colour(skin: torch.Tensor, part: tuple[float, float, float]) -> torch.Tensor:
    """``[B, 3, 1, 1]``: a part of the mouth in the light of ``skin`` ``[B, 3]``; ``part`` = (floor, brightness,
    cast): ``floor + brightness * (grey + cast * (skin - grey))``, grey the skin's mean over its channels."""
    floor, brightness, cast = part
    grey = skin.mean(1, keepdim=True)
    return (floor + brightness * (grey + cast * (skin - grey))).clamp(0, 1)[..., None, None]


def rounded_edge(chain: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``[B, w]``: the height at ``columns`` ``[w]`` of a lip edge through ``chain`` ``[B, K, 2]`` (corner, K - 2
    points, corner), drawn as a parabola over the corners' chord, its bulge fitted to the middle points by least
    squares (a lip's inner edge is round; straight lines between landmarks give a polygon); NaN beyond the
    corners."""
    (left_x, left_y), (right_x, right_y) = chain[:, 0].unbind(-1), chain[:, -1].unbind(-1)
    span = (right_x - left_x).clamp_min(1e-3)[:, None]

    def chord_and_shape(x):
        along = (x - left_x[:, None]) / span
        return left_y[:, None] + along * (right_y - left_y)[:, None], 1 - (2 * along - 1) ** 2

    chord, shape = chord_and_shape(chain[:, 1:-1, 0])
    fit = (shape**2).sum(1, keepdim=True).clamp_min(1e-6)
    bulge = ((chain[:, 1:-1, 1] - chord) * shape).sum(1, keepdim=True) / fit
    chord, shape = chord_and_shape(columns[None].expand(len(chain), -1))
    return torch.where(shape >= 0, chord + bulge * shape, torch.full_like(chord, torch.nan))


def interior_box(target_landmarks: torch.Tensor, size: int) -> tuple[slice, slice]:
    """Rows and columns of a ``size`` crop that hold every target's inner lips ``[B, 68, >=2]`` (over the batch)."""
    inner = target_landmarks[:, list(LIP_EDGES[1] + LIP_EDGES[2]), :2].float()
    first = inner.amin((0, 1)).floor().clamp(0, size - 1).long().tolist()
    last = inner.amax((0, 1)).ceil().clamp(0, size - 1).long().tolist()
    return slice(first[1], last[1] + 1), slice(first[0], last[0] + 1)


def mouth_interior(
    reference: torch.Tensor, reference_landmarks: torch.Tensor, target_landmarks: torch.Tensor, box: tuple[slice, slice]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The drawn interior of the target's mouth over the crop's ``box`` (rows, columns; :func:`interior_box`): its
    cover ``[B, 1, h, w]`` in [0, 1] and its colour ``[B, 3, h, w]``, from ``reference`` ``[B, 3, S, S]`` in [0, 1],
    its landmarks and ``target_landmarks`` ``[B, 68, >=2]`` (crop pixels). The cover is 1 between the target's inner
    lips (:func:`rounded_edge`), soft by a pixel, tapering into the corners, and fades out as the reference's own
    lips part (then its interior is the warp's to move)."""
    target = target_landmarks[..., :2].float()
    axis = torch.arange(reference.shape[-1], dtype=torch.float32, device=reference.device)
    rows, columns = axis[box[0]][None, :, None], axis[box[1]]  # [1, h, 1], [w]
    upper = rounded_edge(target[:, list(LIP_EDGES[1])], columns)[:, None, :]  # [B, 1, w]
    lower = rounded_edge(target[:, list(LIP_EDGES[2])], columns)[:, None, :]
    left, right = target[:, INNER_CORNERS[0], 0], target[:, INNER_CORNERS[1], 0]
    centre, half_width = (left + right)[:, None] / 2, ((right - left).abs() / 2).clamp_min(1.0)[:, None]
    across = (1 - ((columns[None] - centre) / half_width) ** 2).clamp(0, 1)[:, None, :]  # [B, 1, w]: 1 mid-mouth
    gap = inner_gap(target)[:, None, None]
    below_upper, above_lower = rows - upper, lower - rows  # [B, h, w]
    inside = torch.nan_to_num(torch.minimum(below_upper, above_lower).clamp(0, 1), nan=0.0)
    inside = inside * (8 * across).clamp(0, 1)
    teeth_height = torch.minimum(TEETH_SHARE * gap, torch.full_like(gap, TEETH_MOST * reference.shape[-1]))
    teeth = torch.nan_to_num((teeth_height * across.sqrt() - below_upper).clamp(0, 1), nan=0.0)[:, None]
    tongue = TONGUE_WEIGHT * torch.nan_to_num((1 - above_lower / (TONGUE_SHARE * gap).clamp_min(1e-3)).clamp(0, 1))
    tongue = (tongue * across)[:, None]
    skin = skin_colour(reference, reference_landmarks)
    cavity = part_colour(skin, CAVITY)
    colour = cavity + tongue * (part_colour(skin, TONGUE) - cavity)
    colour = colour + teeth * (part_colour(skin, TEETH) - colour)
    corners = reference_landmarks[:, list(INNER_CORNERS), :2].float()
    reference_width = (corners[:, 1] - corners[:, 0]).norm(dim=-1).clamp_min(1.0)
    fade = 1 - (inner_gap(reference_landmarks) / (OPEN_REFERENCE * reference_width)).clamp(0, 1)
    return inside[:, None] * fade[:, None, None, None], colour
