"""The face path: images, detection, alignment, embedding, the gallery, verification, tracking and the video loop."""
