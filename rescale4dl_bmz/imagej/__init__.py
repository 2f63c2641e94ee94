"""ImageJ from Python: the bridge (`bridge`) and the process that hosts the JVM (`worker`)."""
