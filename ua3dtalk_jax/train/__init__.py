"""Training: `run.train` (stage 1, then stage 2, then the held-out evaluation it is given).

stage1/      Prior Extraction and Emotion Distillation (paper §2.1–§2.2)
stage2/      face and mouth branches, then the fuse step (paper §2.3–§2.4)
optim.py     optimisers and the authors' schedules; parallel.py the device mesh and data parallelism
heap.py      glibc's allocator bounded, and the release of programs and free heap between phases
side_by_side.py  two jobs at once in threads (the face and mouth branches), stopped together
config_io.py the workdir's config.json (moving to configs/)
"""
