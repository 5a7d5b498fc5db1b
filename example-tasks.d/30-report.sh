#!/bin/sh
# An idempotency key for outside APIs: stable while this task is retried.
echo "run $RUNNER_RUN_ID, attempt key $RUNNER_ATTEMPT_KEY"
