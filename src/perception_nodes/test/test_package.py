"""`colcon test` smoke tests of the installed package (the full suite is tests/ at the root)."""

import numpy as np


def test_schemas_load_and_image_round_trip():
    from perception_nodes.image_conversion import image_to_numpy, numpy_to_image
    from perception_nodes.params import defaults, load_schema, validate

    for name in ("generic_onnx_node", "bag_player", "bag_recorder", "camera_source"):
        schema = load_schema(name)
        validate(schema, defaults(schema))
    arr = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert (image_to_numpy(numpy_to_image(arr, "rgb8")) == arr).all()
