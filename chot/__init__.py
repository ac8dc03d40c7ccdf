"""chot's command line and whole-system wiring (the `chot` console script)."""
