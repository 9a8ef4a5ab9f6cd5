"""Desktop tools of the stack: the `perception` CLI, bag replay and evaluation, the HTML report,
throughput and resource probes, demo assets. Nothing here runs on the robot's nodes; the nodes,
pipelines, backends and start-up (profile, launcher, deploy) stay in the package above."""
