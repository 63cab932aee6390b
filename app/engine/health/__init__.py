"""Data health: what in a project's images will mislead training or its numbers, and whether more
images would help. It runs on what training computes anyway (file hashes, image headers and the
cached embeddings), so it can be shown before training and added to every report: too few or
unbalanced classes (`counts`), copies and near-copies (`duplicates`), small, all-alike or
unreadable images (`appearance`), and a learning curve from heads trained on growing shares of the
training set (`curve`, `batched_heads`); `report` puts them together. The thresholds were measured
on the shared photo sets; each is documented where it is defined.
"""
