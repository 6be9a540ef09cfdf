#!/usr/bin/env bash
# The third stack, Debian sid (LibTorch and PyTorch 2.14, g++ 16, C++20): see scripts/stack.sh.
exec bash "$(dirname "$0")/stack.sh" sid "$@"
