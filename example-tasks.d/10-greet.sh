#!/bin/sh
# Reads its configuration through runner, as tasks do.
greeting=$($RUNNER_CONFIG_CMD -g demo.greeting)
echo "$greeting (task $RUNNER_TASK_NAME, iteration $RUNNER_ITERATION)"
