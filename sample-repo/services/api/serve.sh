#!/bin/sh
# A stand-in service: prints where it runs.
set -e
[ "$1" = --check ] && { cat /etc/sample/base-release; exit 0; }
echo "api on $(uname -m)"
