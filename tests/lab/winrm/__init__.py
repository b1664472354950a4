"""A stand-in for a Hyper-V host's WinRM endpoint (test infrastructure).

`WinRMEmulator` speaks the WS-Management shell protocol the way pywinrm uses
it, decodes `powershell -EncodedCommand`, recognises the console's own
scripts and acts on a `world` (see `world.MemoryWorld` for the interface).
"""
from .psparse import ParseError, parse_assignments, parse_command_line
from .server import WinRMEmulator
from .world import MemoryWorld, WorldError

__all__ = ["MemoryWorld", "ParseError", "WinRMEmulator", "WorldError", "parse_assignments",
           "parse_command_line"]
