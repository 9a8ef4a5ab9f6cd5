"""Exit codes of ``perception run`` / ``replay`` / ``eval`` and of the bag player, one table so
scripts and CI can tell the failures apart (``perception start``'s own checks keep theirs in
:mod:`deploy`, 0-6).

0 means every node stayed up and, for a replay, every frame got an ``ok`` answer from every node.
"""

EXIT_OK = 0
EXIT_FAILED = 1  # anything not listed below
EXIT_BAD_INPUT = 2  # unreadable or missing bag, unknown profile, invalid argument
EXIT_NODE_DIED = 10  # a node (or the recorder/player) process exited while it should run
EXIT_FRAMES_REJECTED = 11  # a node answered a frame with ok=false (bad image, model error ...)
EXIT_EMPTY_INPUT = 12  # the frame topic has no messages
EXIT_FRAMES_LOST = 13  # a frame got no answer from some node within the retries
EXIT_DUPLICATE_STAMPS = 14  # lockstep: frames share a header stamp, so answers cannot be told apart
EXIT_INTERRUPTED = 130  # stopped by SIGINT/SIGTERM/SIGHUP before it finished

# the player's summary "error_kind" -> exit code
ERROR_KINDS = {
    "bag": EXIT_BAD_INPUT,
    "node_died": EXIT_NODE_DIED,
    "empty_input": EXIT_EMPTY_INPUT,
    "duplicate_stamps": EXIT_DUPLICATE_STAMPS,
    "interrupted": EXIT_INTERRUPTED,
}
