"""Exit codes of the ``strongroom`` command, shared by every command module.

Which error maps to which code is decided in one place, :func:`strongroom.cli.main.exit_code_for`.
"""

from __future__ import annotations

import enum

__all__ = ["EXIT_CODE_HELP", "ExitCode"]


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    DENIED = 4


#: The table printed in ``strongroom --help`` and the README.
EXIT_CODE_HELP = """\
Exit codes:

\b
  0  success
  1  error: a disabled, expired or not-yet-valid secret, a name already in use,
     recover or purge of a live secret, a store that cannot be reached, a broken
     audit chain, a failed rotation, an overdue secret (rotation check
     --fail-on-overdue), a revocation request whose state does not allow the step
  2  usage or bad input: unknown command or option, invalid name, tag, value,
     version or input file, a refused webhook target
  3  not found, whatever the command names: a secret or version (or the name is
     soft-deleted), a rotation policy, a revocation request, a subscription, a
     token, a policy
  4  denied or revoked: the audit log cannot record the call (fail-closed), the
     master key does not open the store or its file is open to others, a
     revoked secret, approving one's own revocation request (or twice), a key
     share refused"""
