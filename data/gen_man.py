#!/usr/bin/env python3
"""Writes the man pages of layerctl and layerfs from their own --help texts.

The help texts in tools/*.cpp (each command's usage) and fuse/main.cpp are
the one source: this script runs the built binaries and wraps what they print
in roff, with a few fixed sections (files, environment, see also). So a man
page can never disagree with --help.

    gen_man.py layerctl BINARY OUT.1 VERSION
    gen_man.py layerfs BINARY OUT.1 VERSION
"""
import re
import subprocess
import sys


def run(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def esc(line):
    """One line of help text as a roff text line (shown verbatim in .nf)."""
    line = line.replace("\\", "\\e").replace("-", "\\-")
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line


def verbatim(text):
    return [".nf"] + [esc(l) for l in text.rstrip("\n").split("\n")] + [".fi"]


def header(name, version, summary, synopsis):
    """.TH, NAME and SYNOPSIS; then the DESCRIPTION heading."""
    return [
        f'.TH {name.upper()} 1 "" "layerfs {version}" "User Commands"',
        ".SH NAME",
        f"{name} \\- {summary}",
        ".SH SYNOPSIS", f".B {name}", esc(synopsis),
        ".SH DESCRIPTION",
    ]


def layerctl_page(binary, version):
    top = run(binary, "--help")
    # Commands: the "  name   summary" lines between "Commands:" and the next blank line.
    block = top.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    commands = []
    for line in block.split("\n"):
        m = re.match(r"  (\S+)\s+(.*)", line)
        if m and m.group(1) != "help":
            commands.append((m.group(1), m.group(2)))
    usage_line = top.split("\n", 1)[0].replace("Usage: ", "")
    global_opts = top.split("Global options:\n", 1)[1].split("\n\n", 1)[0]
    out = header("layerctl", version, "manage a container image layer store and its layerfs mounts",
                 usage_line.replace("layerctl ", "", 1))
    out += ["layerctl pulls OCI images from registries, OCI layouts and docker archives",
            "into a content-addressable store (each layer unpacked once, keyed by its",
            "diff_id), mounts containers of them with the",
            ".BR layerfs (1)",
            "FUSE daemon, runs them with runc, commits their changes as new images and",
            "pushes or exports images. Errors are one line on standard error naming",
            "the thing at fault; the exit status is 1 on failure and 2 for a bad",
            "command line.",
            ".SH GLOBAL OPTIONS"]
    out += verbatim(global_opts)
    out += [".SH COMMANDS",
            "Each command takes the global options too, and",
            ".B \\-\\-help",
            "(as does",
            ".BR \"layerctl help\" \" COMMAND\" ).",
            ]
    for name, summary in commands:
        usage = run(binary, name, "--help")
        out += [f".SS {esc(name)}", esc(summary) + ".", ".PP"]
        out += verbatim(usage)
    out += [".SH ENVIRONMENT",
            ".TP", ".B LAYERFS_ROOT",
            "the store (default /var/lib/layerfs as root, $XDG_DATA_HOME/layerfs otherwise)",
            ".TP", ".B LAYERFS",
            "the layerfs daemon to start (default: beside layerctl, then PATH)",
            ".TP", ".B REGISTRY_AUTH_FILE",
            "registry credentials, as podman and skopeo read them",
            ".TP", ".B SOURCE_DATE_EPOCH",
            "the timestamp of committed layers (see commit)",
            ".SH FILES",
            ".TP", ".I /var/lib/layerfs",
            "the store: blobs/, layers/, images/, containers/ (as root)",
            ".TP", ".I /run/layerfs",
            "bundles of running 'layerctl run' containers",
            ".SH SEE ALSO",
            ".BR layerfs (1),",
            ".BR runc (8),",
            ".BR podman (1),",
            ".BR skopeo (1),",
            ".BR containers-storage.conf (5)"]
    return out


def layerfs_page(binary, version):
    text = run(binary, "--help")
    usage_line, rest = text.split("\n", 1)
    out = header("layerfs", version, "FUSE union filesystem over container image layers",
                 usage_line.replace("usage: layerfs ", "", 1))
    out += ["layerfs serves the union of read-only lower directories and a copy-on-write",
            "upper directory, in the format of the kernel's overlayfs (whiteouts as 0:0",
            "character devices or user.overlay.whiteout files, opaque directories by",
            "xattr), the way",
            ".BR fuse\\-overlayfs (1)",
            "does and with its options, so that podman, buildah and containers/storage",
            "use it unchanged as their overlay mount_program (see",
            ".BR containers-storage.conf (5)",
            "and the storage.conf snippet installed with layerfs).",
            ".BR layerctl (1)",
            "starts it for the containers of its store.",
            ".SH OPTIONS"]
    out += verbatim(rest.lstrip("\n"))
    out += [".SH COMPATIBILITY",
            "Options of fuse\\-overlayfs that layerfs takes: lowerdir, upperdir, workdir,",
            "uidmapping, gidmapping, squash_to_root, squash_to_uid, squash_to_gid,",
            "static_nlink, noacl, fsync=0, volatile, xattr_permissions, timeout, threaded,",
            "plus libfuse's mount options. Layers of fuse\\-overlayfs, of the kernel's",
            "overlayfs and of layerfs are interchangeable.",
            ".SH SEE ALSO",
            ".BR layerctl (1),",
            ".BR fuse\\-overlayfs (1),",
            ".BR mount.fuse3 (8),",
            ".BR containers-storage.conf (5)"]
    return out


def main():
    which, binary, out_path, version = sys.argv[1:5]
    page = layerctl_page(binary, version) if which == "layerctl" else layerfs_page(binary, version)
    with open(out_path, "w") as f:
        f.write("\n".join(page) + "\n")


if __name__ == "__main__":
    main()
