"""Image conversion on 640x480 rgb8. Targets: decode zero-copy < 0.05 ms; encode <= 2x a memcpy."""

import time

import numpy as np

from perception_nodes.image_conversion import image_to_numpy, image_to_rgb, numpy_to_image


def median_ms(fn, n=300):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts))


def main():
    arr = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    msg = numpy_to_image(arr, "rgb8")
    dst = np.empty_like(arr)
    decode = median_ms(lambda: image_to_numpy(msg))
    to_rgb = median_ms(lambda: image_to_rgb(msg))
    encode = median_ms(lambda: numpy_to_image(arr, "rgb8"))
    memcpy = median_ms(lambda: np.copyto(dst, arr))
    fresh = median_ms(lambda: arr.copy())  # a new message needs new memory: page faults included
    print("benchmark: image conversion, 640x480 rgb8 (median of 300)")
    print(
        f"  decode image_to_numpy (zero-copy view): {decode:.4f} ms   target < 0.05 ms  "
        f"{'OK' if decode < 0.05 else 'MISS'}"
    )
    print(f"  image_to_rgb (rgb8 passthrough):        {to_rgb:.4f} ms")
    print(f"  encode numpy_to_image:                  {encode:.4f} ms")
    print(f"  plain memcpy of the same bytes:         {memcpy:.4f} ms")
    print(f"  copy into freshly allocated memory:     {fresh:.4f} ms")
    print(
        f"  encode / memcpy:                        {encode / memcpy:.2f}x  target <= 2x  "
        f"{'OK' if encode <= 2 * memcpy else 'MISS'}"
    )
    print(f"  encode / fresh copy:                    {encode / fresh:.2f}x")


if __name__ == "__main__":
    main()
