"""bioimage.io model packages: export a sweep's model, inspect and run published packages."""
