"""One thin entry module per DVC stage: `python -m diffaug.stages.<name>`.

Each reads its params, calls library code, and writes its outputs (the frame is `diffaug.cli.run`).
"""
