#!/bin/sh
# Fails on its first try, like a mirror that is not up yet; runner backs
# off and tries again.
if [ "$RUNNER_TRY_NUM" -lt 2 ]; then
    echo "mirror $($RUNNER_CONFIG_CMD -g flaky.mirror) not reachable yet" >&2
    exit 1
fi
echo "succeeded on try $RUNNER_TRY_NUM"
