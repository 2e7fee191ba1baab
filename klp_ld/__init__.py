"""klp-ld: a drop-in `LD` for kbuild that builds Linux livepatch modules with klp relocations."""

__version__ = "0.1.0"
