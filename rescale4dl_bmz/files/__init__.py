"""Files: images and their pixel sizes, atomic writes, the run folder and its lock, evaluation folders."""
