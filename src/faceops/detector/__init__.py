"""A face detector of FaceOps' own: a small single-shot anchor-free network trained from scratch on MTCNN
pseudo-labels, with a custom loss (focal heatmap + GIoU boxes + wing landmarks), decoding to :class:`Face`."""
