"""ImageJ from Python: the session (`bridge`), what it needs installed (`install`), whole-file runs
(`batch`) and the process that hosts the JVM (`worker`)."""
