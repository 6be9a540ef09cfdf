#!/usr/bin/env bash
# The second stack, Debian trixie (LibTorch and PyTorch 2.6): see scripts/stack.sh.
exec bash "$(dirname "$0")/stack.sh" trixie "$@"
