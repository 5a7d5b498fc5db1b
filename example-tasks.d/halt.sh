#!/bin/sh
# A real chain would run "shutdown -h now" or "reboot" here.
echo "halt requested (demo: not halting)"
