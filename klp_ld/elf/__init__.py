"""ELF in layers: record layouts (`layout`), checked headers of any ELF64 file (`headers`), the
object model (`model`) with its reader (`read`) and writer (`write`), and the constants (`consts`)."""
