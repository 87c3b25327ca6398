"""A module's forward run by ONNX Runtime on the CPU, for inference: the same function to float rounding, and on a
2-core CPU several times faster than eager PyTorch for the renderer's refinement (ONNX Runtime fuses each conv with
its activation and plans the skip concatenations' memory)."""

import io
import warnings

import torch
from torch import nn


class OnnxFunction:
    """``module``'s forward, exported (in memory, from its current weights) with ``example`` inputs named ``names``
    and a free batch dimension, and run by ONNX Runtime on ``threads`` threads (torch's count by default).
    Called with CPU tensors, returns a tuple of float32 CPU tensors."""

    def __init__(
        self, module: nn.Module, example: tuple[torch.Tensor, ...], names: tuple[str, ...], threads: int | None = None
    ):
        import onnxruntime

        self.names = names
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing and on its own deprecation
            outputs = module(*example)
            count = len(outputs) if isinstance(outputs, tuple) else 1
            output_names = [f"output{index}" for index in range(count)]
            axes = {name: {0: "batch"} for name in (*names, *output_names)}
            torch.onnx.export(module.eval(), example, buffer, input_names=list(names), output_names=output_names,
                              dynamic_axes=axes, dynamo=False)  # fmt: skip
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = {
            name: value.detach().float().contiguous().numpy() for name, value in zip(self.names, inputs, strict=True)
        }
        return tuple(torch.from_numpy(output) for output in self.session.run(None, feed))
