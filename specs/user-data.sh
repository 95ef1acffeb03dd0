#!/bin/sh
# Example user data: nothing to configure, the image under test must work as baked.
echo "amiprobe smoke test" > /etc/motd
