"""Process-wide state: settings applied once by entry points, and clean shutdown on signals."""
