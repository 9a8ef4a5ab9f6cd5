"""A node survives any request: lifecycle transitions that are not available in its state, unknown
transition ids and labels, parameter requests with unknown names or malformed values. Each gets
a failed answer with a logged reason, and the node still processes frames afterwards (rclpy
raised 'Transition is not registered' inside the service callback, which ended the process)."""

from __future__ import annotations

import time

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from perception_msgs.msg import FrameStatus
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters, SetParametersAtomically
from sensor_msgs.msg import Image

from perception_nodes.launcher import StackProcesses
from rosgraph import Probe
from test_nodes_integration import generic_node, image


def _transition(tid: int = 0, label: str = "") -> ChangeState.Request:
    req = ChangeState.Request()
    req.transition = Transition(id=tid, label=label)
    return req


def test_invalid_requests_are_refused_and_the_node_keeps_processing(tmp_path, demo_model, rclpy_context):
    with StackProcesses(generic_node("req", demo_model), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        statuses = probe.collect(FrameStatus, "/perception/frame_status")
        pub = probe.publisher(Image, "/req/in")
        assert pub is not None, stack.log_text("req")
        state = probe.call(GetState, "/req/get_state", GetState.Request())
        assert state is not None and state.current_state.label == "active"

        # Each of these killed the process before: not available while active, or unknown.
        for req in (
            _transition(Transition.TRANSITION_CONFIGURE),
            _transition(Transition.TRANSITION_CLEANUP),
            _transition(Transition.TRANSITION_ACTIVATE),
            _transition(99),
            _transition(label="bogus"),
            _transition(label="configure"),
        ):
            resp = probe.call(ChangeState, "/req/change_state", req)
            assert resp is not None and resp.success is False, (req, stack.log_text("req"))
            assert stack.alive()["req"], stack.log_text("req")
        log = stack.log_text("req")
        assert "lifecycle request '1' refused: not available in state 'active'" in log
        assert "lifecycle request 'bogus' refused" in log and "deactivate (4)" in log

        # Parameter requests: unknown names, a malformed type, a value of the wrong type.
        got = probe.call(GetParameters, "/req/get_parameters", GetParameters.Request(names=["no_such_param"]))
        assert got is not None
        desc = probe.call(
            DescribeParameters, "/req/describe_parameters", DescribeParameters.Request(names=["no_such_param"])
        )
        assert desc is not None
        bad_type = Parameter(name="score_threshold", value=ParameterValue(type=200))
        wrong = Parameter(
            name="input_policy", value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=3)
        )
        unknown = Parameter(
            name="no_such_param", value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True)
        )
        for srv, req in (
            (SetParameters, SetParameters.Request(parameters=[bad_type, wrong, unknown])),
            (SetParametersAtomically, SetParametersAtomically.Request(parameters=[bad_type])),
        ):
            name = "/req/set_parameters" if srv is SetParameters else "/req/set_parameters_atomically"
            resp = probe.call(srv, name, req)
            assert resp is not None, stack.log_text("req")
            results = resp.results if srv is SetParameters else [resp.result]
            assert results and not any(r.successful for r in results), results
        assert stack.alive()["req"], stack.log_text("req")

        # Still active and still processing frames.
        state = probe.call(GetState, "/req/get_state", GetState.Request())
        assert state.current_state.label == "active"
        pub.publish(image(7))
        assert probe.spin_until(lambda: any(s.header.stamp.sec == 107 and s.ok for s in statuses), 30), stack.log_text(
            "req"
        )

        # A valid sequence still works: deactivate, cleanup, configure, activate.
        for tid in (
            Transition.TRANSITION_DEACTIVATE,
            Transition.TRANSITION_CLEANUP,
            Transition.TRANSITION_CONFIGURE,
            Transition.TRANSITION_ACTIVATE,
        ):
            resp = probe.call(ChangeState, "/req/change_state", _transition(tid))
            assert resp is not None and resp.success, (tid, stack.log_text("req"))
        # activate re-created the subscription: it matches the probe's publisher a moment later, so
        # the frame is re-sent until answered, as a lockstep player retries (an answered frame is
        # not processed twice)
        deadline = time.monotonic() + 30
        answered = lambda: any(s.header.stamp.sec == 108 and s.ok for s in statuses)  # noqa: E731
        while not answered() and time.monotonic() < deadline:
            pub.publish(image(8))
            probe.spin_until(answered, 1.0)
        assert answered(), stack.log_text("req")
        probe.close()
