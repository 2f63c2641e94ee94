"""Files: image folders and pairing by name (`folders`), image/mask files with pixel sizes (`images`),
atomic writes (`atomic`), text/JSON/CSV (`text_files`), the validated dataset (`dataset`), the run
folder and its lock, evaluation folders."""
