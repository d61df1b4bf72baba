"""
The `allennlp` command for the docs test, without paying its imports (about 6 CPU seconds) for each
of the examples' commands: a server imports allennlp and early_exit once, then forks a child per
command, which runs allennlp's own entry point (`allennlp.__main__.run`, what the installed
`allennlp` script runs) on the command's arguments, in its folder, with its environment and its
standard streams. The `allennlp` the examples find on their path is a small client (`write_client`)
that hands these over on a Unix socket and exits with the child's status.

The server runs no torch computation before forking (a child could not use OpenMP after one).

Usage: python -m tests.docs.allennlp_server SOCKET
"""

import json
import os
import socket
import sys
import traceback
from pathlib import Path

_CLIENT = """#!{python} -S
# `allennlp` for the docs test: runs the command in the server at {socket_path} (see {module}).
import json, os, socket, sys

connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
connection.connect({socket_path!r})
request = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
sys.exit(int(connection.recv(16) or b"1"))
"""


def write_client(bin_dir: Path, socket_path: Path) -> Path:
    """An executable `allennlp` in `bin_dir` that runs its command in the server at `socket_path`."""
    client = bin_dir / "allennlp"
    client.write_text(
        _CLIENT.format(python=sys.executable, socket_path=str(socket_path), module=__name__)
    )
    client.chmod(0o755)
    return client


def _run_in_child(request: dict, streams: list) -> None:
    """The forked child: the command as the `allennlp` script would run it; never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for target, stream in enumerate(streams):
            os.dup2(stream, target)
        sys.argv = ["allennlp", *request["argv"]]
        from allennlp.__main__ import run

        run()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:  # what the real script would print before exiting with status 1
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(socket_path: str) -> None:
    import allennlp.__main__  # noqa: F401  (the imports every command pays)
    import allennlp.commands  # noqa: F401
    import early_exit  # noqa: F401

    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(socket_path + ".binding")
    server.listen()
    os.rename(socket_path + ".binding", socket_path)  # it appears when it takes connections
    server.settimeout(5)
    parent = os.getppid()
    while os.getppid() == parent:  # a test run that was killed leaves no server behind
        try:
            connection, _ = server.accept()
        except socket.timeout:
            continue
        connection.settimeout(None)
        with connection:
            message, streams, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            pid = os.fork()
            if pid == 0:
                server.close()
                _run_in_child(json.loads(message), streams)
            for stream in streams:
                os.close(stream)
            _, status = os.waitpid(pid, 0)
            connection.sendall(str(os.waitstatus_to_exitcode(status)).encode())


if __name__ == "__main__":
    serve(sys.argv[1])
