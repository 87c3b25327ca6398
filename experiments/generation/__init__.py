"""Generation's parts that work on the photo: the face moved at the photo's own resolution, and blinks."""
