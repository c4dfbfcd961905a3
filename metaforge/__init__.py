"""mf: the digital twin of a hardware product, kept inside its git repository."""

__version__ = "0.1.0"
