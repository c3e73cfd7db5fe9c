"""Point-cloud and image file I/O with validation.

- PCD (PCL's format): ascii, binary and binary_compressed (LZF) read and write, written here from
  the PCD v0.7 file-format description (header, then data; compressed data is stored field by
  field and LZF-compressed).
- PLY through `plyfile`, with optional colours and extra scalar vertex properties.
- The txt ground-truth files of Real3D-AD (whitespace, ``x y z label``) and Anomaly-ShapeNet
  (comma, ``x,y,z,label``).
- Organized xyz TIFFs (tifffile) and RGB / mask PNGs (pillow) of MVTec 3D-AD-like trees.

Every reader raises `DatasetError` naming the file and what was expected: truncated or malformed
files, NaN/inf coordinates, empty clouds, wrong shapes. Writers go through a temporary file and a
rename, so an interrupted write never leaves a half file.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.cache import atomic_write_bytes
from benchmark.errors import DatasetError

PathLike = str | os.PathLike

_PCD_TYPES = {
    ("F", 4): np.float32,
    ("F", 8): np.float64,
    ("I", 1): np.int8,
    ("I", 2): np.int16,
    ("I", 4): np.int32,
    ("I", 8): np.int64,
    ("U", 1): np.uint8,
    ("U", 2): np.uint16,
    ("U", 4): np.uint32,
    ("U", 8): np.uint64,
}
_COLOR_FIELDS = ("rgb", "rgba")


@dataclass
class PointCloudFile:
    """What a point-cloud file holds: float32 (N,3) points, optional uint8 (N,3) colours and any
    other per-point fields (name -> (N,) or (N,k) array)."""

    points: np.ndarray
    colors: np.ndarray | None = None
    scalars: dict[str, np.ndarray] = field(default_factory=dict)


def _write(path: PathLike, data: bytes, atomic: bool = True) -> None:
    """Atomic (temp file + fsync + rename) by default; plain when the caller already writes into a
    temporary folder that is renamed into place as a whole (dataset generation, conversions)."""
    if atomic:
        atomic_write_bytes(path, data)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _check_points(path: PathLike, pts: np.ndarray, allow_empty: bool, finite: bool) -> np.ndarray:
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DatasetError(f"{path}: expected (N,3) coordinates, got shape {pts.shape}")
    if len(pts) == 0 and not allow_empty:
        raise DatasetError(f"{path}: empty point cloud (0 points)")
    if finite and len(pts):
        bad = ~np.isfinite(pts).all(axis=1)
        if bad.any():
            raise DatasetError(
                f"{path}: {int(bad.sum())} point(s) with NaN/inf coordinates "
                f"(first at row {int(np.argmax(bad))}); expected finite x, y, z"
            )
    return np.ascontiguousarray(pts, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# LZF (the compression of PCD binary_compressed)


def lzf_decompress(data: bytes, expected_size: int, path: PathLike = "<bytes>") -> bytes:
    """Decompresses an LZF stream; raises DatasetError when it is corrupt or of the wrong size."""
    out = bytearray()
    ip, n = 0, len(data)
    while ip < n:
        ctrl = data[ip]
        ip += 1
        if ctrl < 32:  # literal run of ctrl+1 bytes
            run = ctrl + 1
            if ip + run > n:
                raise DatasetError(f"{path}: corrupt LZF data (literal run past the end)")
            out += data[ip : ip + run]
            ip += run
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n:
                raise DatasetError(f"{path}: corrupt LZF data (truncated back-reference)")
            length += data[ip]
            ip += 1
        if ip >= n:
            raise DatasetError(f"{path}: corrupt LZF data (truncated back-reference)")
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[ip] - 1
        ip += 1
        length += 2
        if ref < 0:
            raise DatasetError(f"{path}: corrupt LZF data (reference before the start)")
        if ref + length <= len(out):
            out += out[ref : ref + length]
        else:  # overlapping copy (a repeated pattern)
            for k in range(length):
                out.append(out[ref + k])
        if len(out) > expected_size:
            break
    if len(out) != expected_size:
        raise DatasetError(
            f"{path}: LZF data decompresses to {len(out)} bytes, header says {expected_size}"
        )
    return bytes(out)


def lzf_compress_literal(data: bytes) -> bytes:
    """A valid LZF stream made of literal runs only (no back-references): larger than a real
    compressor's output, but readable by every LZF decoder (PCL, Open3D) and fast in numpy."""
    raw = np.frombuffer(data, dtype=np.uint8)
    full = len(raw) // 32
    body = np.empty((full, 33), dtype=np.uint8)
    body[:, 0] = 31
    body[:, 1:] = raw[: full * 32].reshape(full, 32)
    tail = raw[full * 32 :]
    out = body.tobytes()
    if len(tail):
        out += bytes([len(tail) - 1]) + tail.tobytes()
    return out


# ---------------------------------------------------------------------------------------------
# PCD


def _parse_pcd_header(path: PathLike, blob: bytes) -> tuple[dict[str, list[str]], int]:
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = blob.find(b"\n", pos)
        if end < 0:
            raise DatasetError(f"{path}: PCD header has no DATA line (truncated or not a PCD file)")
        line = blob[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            break
    for key in ("FIELDS", "SIZE", "TYPE", "POINTS", "DATA"):
        if key not in header:
            raise DatasetError(f"{path}: PCD header lacks the {key} line")
    return header, pos


def _pcd_dtype(path: PathLike, header: dict[str, list[str]]) -> np.dtype:
    names = header["FIELDS"]
    sizes, types = header["SIZE"], header["TYPE"]
    counts = header.get("COUNT", ["1"] * len(names))
    if not (len(names) == len(sizes) == len(types) == len(counts)):
        raise DatasetError(
            f"{path}: PCD header FIELDS/SIZE/TYPE/COUNT have different lengths "
            f"({len(names)}/{len(sizes)}/{len(types)}/{len(counts)})"
        )
    spec = []
    seen: dict[str, int] = {}
    for name, size, typ, count in zip(names, sizes, types, counts):
        try:
            np_type = _PCD_TYPES[(typ.upper(), int(size))]
            count_i = int(count)
        except (KeyError, ValueError) as err:
            raise DatasetError(
                f"{path}: unsupported PCD field {name} TYPE {typ} SIZE {size}"
            ) from err
        if name == "_":  # padding fields
            seen[name] = seen.get(name, 0) + 1
            name = f"_pad{seen['_']}"
        spec.append((name, np_type, (count_i,)) if count_i > 1 else (name, np_type))
    dtype = np.dtype(spec)
    for axis in ("x", "y", "z"):
        if axis not in dtype.names:
            raise DatasetError(f"{path}: PCD has no '{axis}' field (FIELDS {' '.join(names)})")
    return dtype


def _unpack_rgb(values: np.ndarray) -> np.ndarray:
    packed = np.ascontiguousarray(values).view(np.uint32) if values.dtype.itemsize == 4 else None
    if packed is None:
        packed = values.astype(np.uint32)
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(
        np.uint8
    )


def read_pcd_header(path: PathLike) -> dict[str, list[str]]:
    """Parses only the header of a PCD file (cheap: reads at most the first 64 KiB)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError as err:
        raise DatasetError(f"{path}: cannot read point-cloud file ({err.strerror})") from err
    return _parse_pcd_header(path, head)[0]


def pcd_point_count(path: PathLike) -> int:
    header = read_pcd_header(path)
    try:
        return int(header["POINTS"][0])
    except (IndexError, ValueError) as err:
        raise DatasetError(f"{path}: PCD POINTS line is not an integer") from err


def read_pcd(path: PathLike, allow_empty: bool = False, finite: bool = True) -> PointCloudFile:
    """Reads a PCD file (DATA ascii, binary or binary_compressed). Packed ``rgb``/``rgba`` fields
    become uint8 colours; every other field except x, y, z is returned in `scalars`."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read point-cloud file ({err.strerror})") from err
    header, pos = _parse_pcd_header(path, blob)
    dtype = _pcd_dtype(path, header)
    try:
        n = int(header["POINTS"][0])
    except (IndexError, ValueError) as err:
        raise DatasetError(f"{path}: PCD POINTS line is not an integer") from err
    if "WIDTH" in header and "HEIGHT" in header:
        try:
            wh = int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
        except (IndexError, ValueError) as err:
            raise DatasetError(f"{path}: PCD WIDTH/HEIGHT are not integers") from err
        if wh != n:
            raise DatasetError(f"{path}: PCD WIDTH*HEIGHT = {wh} but POINTS = {n}")
    kind = header["DATA"][0].lower() if header["DATA"] else ""
    body = blob[pos:]
    if kind == "ascii":
        data = _read_pcd_ascii(path, body, dtype, n)
    elif kind == "binary":
        need = n * dtype.itemsize
        if len(body) < need:
            raise DatasetError(
                f"{path}: truncated PCD binary data: {len(body)} bytes, expected {need} "
                f"({n} points x {dtype.itemsize} bytes)"
            )
        data = np.frombuffer(body[:need], dtype=dtype, count=n)
    elif kind == "binary_compressed":
        data = _read_pcd_compressed_fast(path, dtype, n)
        if data is None:
            data = _read_pcd_compressed(path, body, dtype, n)
    else:
        raise DatasetError(
            f"{path}: unknown PCD DATA kind {kind!r} (ascii|binary|binary_compressed)"
        )
    pts = np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float32)
    pts = _check_points(path, pts, allow_empty, finite)
    colors, scalars = None, {}
    for name in dtype.names:
        if name in ("x", "y", "z") or name.startswith("_pad"):
            continue
        if name in _COLOR_FIELDS and colors is None:
            colors = _unpack_rgb(np.asarray(data[name]))
        else:
            scalars[name] = np.array(data[name])
    return PointCloudFile(points=pts, colors=colors, scalars=scalars)


def _read_pcd_ascii(path: Path, body: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    width = sum(int(np.prod(dtype[name].shape or (1,))) for name in dtype.names)
    try:
        flat = np.loadtxt(io.BytesIO(body), dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DatasetError(f"{path}: malformed PCD ascii data ({err})") from err
    if n == 0 and flat.size == 0:
        flat = np.zeros((0, width))
    if flat.shape != (n, width):
        raise DatasetError(
            f"{path}: PCD ascii data has shape {flat.shape}, "
            f"header says {n} points x {width} values"
        )
    out = np.zeros(n, dtype=dtype)
    col = 0
    for name in dtype.names:
        k = int(np.prod(dtype[name].shape or (1,)))
        vals = flat[:, col : col + k]
        base = dtype[name].base
        if name in _COLOR_FIELDS and base == np.float32:
            # rgb packed into a float is written as its float value in ascii files
            out[name] = vals[:, 0].astype(np.float32)
        else:
            out[name] = vals.reshape(out[name].shape).astype(base)
        col += k
    return out


def _read_pcd_compressed_fast(path: Path, dtype: np.dtype, n: int) -> np.ndarray | None:
    """Large x/y/z-only compressed clouds: Open3D's C++ LZF decoder (the pure-Python one takes
    ~6 s per million points). Returns None (use the Python decoder, which names the exact problem)
    when Open3D is missing, the fields differ, or Open3D does not return exactly `n` points."""
    if n < 200_000 or set(dtype.names) != {"x", "y", "z"}:
        return None
    try:
        import open3d as o3d
    except ImportError:
        return None
    pts = np.asarray(o3d.io.read_point_cloud(str(path), format="pcd").points)
    if pts.shape != (n, 3):
        return None
    out = np.zeros(n, dtype=dtype)
    for j, axis in enumerate(("x", "y", "z")):
        out[axis] = pts[:, j]
    return out


def _read_pcd_compressed(path: Path, body: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    if len(body) < 8:
        raise DatasetError(f"{path}: truncated PCD binary_compressed data (no size header)")
    csize, usize = struct.unpack("<II", body[:8])
    if usize != n * dtype.itemsize:
        raise DatasetError(
            f"{path}: PCD binary_compressed uncompressed size {usize} != {n} points x "
            f"{dtype.itemsize} bytes"
        )
    if len(body) < 8 + csize:
        raise DatasetError(
            f"{path}: truncated PCD binary_compressed data: {len(body) - 8} of {csize} bytes"
        )
    raw = lzf_decompress(body[8 : 8 + csize], usize, path) if usize else b""
    out = np.zeros(n, dtype=dtype)
    offset = 0
    for name in dtype.names:  # stored field by field (structure of arrays)
        sub = dtype[name]
        nbytes = n * sub.itemsize
        out[name] = np.frombuffer(raw[offset : offset + nbytes], dtype=sub.base).reshape(
            out[name].shape
        )
        offset += nbytes
    return out


def _scalar_columns(
    path: str | os.PathLike, scalars: dict[str, np.ndarray] | None, n: int
) -> list[tuple[str, np.ndarray]]:
    """Per-point scalar fields checked for length n; float64 stored as float32."""
    out = []
    for name, values in (scalars or {}).items():
        v = np.asarray(values)
        if v.shape != (n,):
            raise DatasetError(
                f"{path}: scalar field {name!r} has shape {v.shape}, expected ({n},)"
            )
        out.append((name, v.astype(np.float32) if v.dtype == np.float64 else v))
    return out


def write_pcd(
    path: PathLike,
    points: np.ndarray,
    colors: np.ndarray | None = None,
    scalars: dict[str, np.ndarray] | None = None,
    data: str = "binary",
    atomic: bool = True,
) -> None:
    """Writes a PCD v0.7 file with fields x y z [rgb] [scalars...]; `data` is ascii, binary or
    binary_compressed. Colours are packed into PCL's float ``rgb`` field."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DatasetError(f"{path}: write_pcd expects (N,3) points, got {pts.shape}")
    n = len(pts)
    cols: list[tuple[str, np.ndarray]] = [("x", pts[:, 0]), ("y", pts[:, 1]), ("z", pts[:, 2])]
    if colors is not None:
        c = np.asarray(colors, dtype=np.uint32).reshape(n, 3)
        packed = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype(np.uint32)
        cols.append(("rgb", packed.view(np.float32)))
    cols.extend(_scalar_columns(path, scalars, n))
    type_of = {v: k for k, v in _PCD_TYPES.items()}
    names, sizes, types = [], [], []
    for name, v in cols:
        t, s = type_of.get(v.dtype.type, ("F", 4))
        names.append(name)
        sizes.append(str(s))
        types.append(t)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(names)}\nSIZE {' '.join(sizes)}\nTYPE {' '.join(types)}\n"
        f"COUNT {' '.join('1' for _ in names)}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {n}\nDATA {data}\n"
    ).encode("ascii")
    dtype = np.dtype([(name, v.dtype) for name, v in cols])
    if data == "ascii":
        import pandas as pd

        table = pd.DataFrame({f"c{j}": v for j, (_, v) in enumerate(cols)})
        opts = {"header": False, "index": False, "float_format": "%.9g", "na_rep": "nan"}
        text = table.to_csv(sep=" ", **opts) if n else ""
        body = text.encode("ascii")
    elif data == "binary":
        arr = np.zeros(n, dtype=dtype)
        for name, v in cols:
            arr[name] = v
        body = arr.tobytes()
    elif data == "binary_compressed":
        raw = b"".join(np.ascontiguousarray(v).tobytes() for _, v in cols)
        comp = lzf_compress_literal(raw) if raw else b""
        body = struct.pack("<II", len(comp), len(raw)) + comp
    else:
        raise DatasetError(
            f"{path}: unknown PCD data kind {data!r} (ascii|binary|binary_compressed)"
        )
    _write(path, header + body, atomic)


# ---------------------------------------------------------------------------------------------
# PLY


def read_ply(path: PathLike, allow_empty: bool = False, finite: bool = True) -> PointCloudFile:
    """Reads the ``vertex`` element of a PLY file (ascii or binary) with `plyfile`."""
    from plyfile import PlyData

    path = Path(path)
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
        props = [p.name for p in vertex.properties]
        table = vertex.data
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: cannot read point-cloud file (not found)") from err
    except KeyError as err:
        raise DatasetError(f"{path}: PLY file has no 'vertex' element") from err
    except Exception as err:  # plyfile raises many kinds on truncated/malformed input
        raise DatasetError(
            f"{path}: malformed or truncated PLY file ({type(err).__name__}: {err})"
        ) from err
    for axis in ("x", "y", "z"):
        if axis not in props:
            raise DatasetError(f"{path}: PLY vertex has no '{axis}' property (has {props})")
    pts = np.stack([table["x"], table["y"], table["z"]], axis=1).astype(np.float32)
    pts = _check_points(path, pts, allow_empty, finite)
    colors = None
    if all(c in props for c in ("red", "green", "blue")):
        colors = np.stack([table[c] for c in ("red", "green", "blue")], axis=1)
        if colors.dtype.kind == "f":  # some writers store 0..1 floats
            colors = np.clip(np.round(colors * 255.0), 0, 255)
        colors = colors.astype(np.uint8)
    skip = {"x", "y", "z", "red", "green", "blue"} if colors is not None else {"x", "y", "z"}
    scalars = {p: np.array(table[p]) for p in props if p not in skip}
    return PointCloudFile(points=pts, colors=colors, scalars=scalars)


def write_ply(
    path: PathLike,
    points: np.ndarray,
    colors: np.ndarray | None = None,
    scalars: dict[str, np.ndarray] | None = None,
    binary: bool = True,
    atomic: bool = True,
) -> None:
    """Writes a PLY point cloud (float32 x y z, optional uchar red green blue, extra scalars)."""
    from plyfile import PlyData, PlyElement

    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DatasetError(f"{path}: write_ply expects (N,3) points, got {pts.shape}")
    n = len(pts)
    spec: list[tuple[str, np.dtype]] = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    values: dict[str, np.ndarray] = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}
    if colors is not None:
        c = np.asarray(colors, dtype=np.uint8).reshape(n, 3)
        for j, name in enumerate(("red", "green", "blue")):
            spec.append((name, "u1"))
            values[name] = c[:, j]
    for name, v in _scalar_columns(path, scalars, n):
        spec.append((name, v.dtype.str))
        values[name] = v
    arr = np.zeros(n, dtype=spec)
    for name, v in values.items():
        arr[name] = v
    buf = io.BytesIO()
    PlyData([PlyElement.describe(arr, "vertex")], text=not binary).write(buf)
    _write(path, buf.getvalue(), atomic)


def read_point_cloud(path: PathLike, **kwargs) -> PointCloudFile:
    """Dispatches on the suffix: .pcd or .ply."""
    suffix = Path(path).suffix.lower()
    if suffix == ".pcd":
        return read_pcd(path, **kwargs)
    if suffix == ".ply":
        return read_ply(path, **kwargs)
    raise DatasetError(f"{path}: unknown point-cloud format {suffix!r} (expected .pcd or .ply)")


# ---------------------------------------------------------------------------------------------
# txt ground truth


def read_gt_txt(
    path: PathLike, delimiter: str | None = None, expected_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a per-point GT file of rows ``x y z label`` (delimiter None = whitespace, or ',').

    Returns (points float32 (N,3), labels uint8 (N,) of 0/1). Raises DatasetError on a malformed
    row, a label outside {0, 1}, NaN/inf coordinates, an empty file, or when `expected_rows` is
    given and differs."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": checked below
            table = np.loadtxt(path, dtype=np.float64, delimiter=delimiter, ndmin=2)
    except OSError as err:
        raise DatasetError(f"{path}: cannot read GT file ({err})") from err
    except ValueError as err:
        sep = "whitespace" if delimiter is None else repr(delimiter)
        raise DatasetError(
            f"{path}: malformed GT txt (expected rows 'x y z label' separated by {sep}): {err}"
        ) from err
    if table.size == 0:
        raise DatasetError(f"{path}: empty GT file (0 rows)")
    if table.shape[1] != 4:
        raise DatasetError(
            f"{path}: GT rows have {table.shape[1]} columns, expected 4 (x y z label)"
        )
    if expected_rows is not None and len(table) != expected_rows:
        raise DatasetError(
            f"{path}: GT has {len(table)} rows but the point cloud has {expected_rows} points"
        )
    pts = _check_points(path, table[:, :3], False, True)
    lab = table[:, 3]
    if not np.isin(lab, (0.0, 1.0)).all():
        bad = np.unique(lab[~np.isin(lab, (0.0, 1.0))])[:5]
        raise DatasetError(f"{path}: GT labels must be 0 or 1, found {bad.tolist()}")
    return pts, lab.astype(np.uint8)


def write_gt_txt(
    path: PathLike,
    points: np.ndarray,
    labels: np.ndarray,
    delimiter: str = " ",
    atomic: bool = True,
) -> None:
    """Writes rows ``x y z label`` (6 decimals; `delimiter` " " for Real3D-AD, "," for
    Anomaly-ShapeNet)."""
    import pandas as pd

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    table = pd.DataFrame({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]})
    table["label"] = np.asarray(labels).astype(np.int64).reshape(-1)
    text = table.to_csv(sep=delimiter, header=False, index=False, float_format="%.6f", na_rep="nan")
    _write(path, text.encode("ascii"), atomic)


# ---------------------------------------------------------------------------------------------
# images (organized datasets)


def read_xyz_tiff(path: PathLike) -> np.ndarray:
    """Reads an organized point cloud TIFF: float32 (H,W,3); raises on other shapes or NaN/inf."""
    import tifffile

    path = Path(path)
    try:
        arr = tifffile.imread(str(path))
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: xyz TIFF not found") from err
    except Exception as err:
        raise DatasetError(
            f"{path}: unreadable or truncated TIFF ({type(err).__name__}: {err})"
        ) from err
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DatasetError(
            f"{path}: expected an organized point cloud of shape (H,W,3), got {arr.shape}"
        )
    if arr.dtype.kind != "f":
        raise DatasetError(f"{path}: expected float xyz values, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int((~finite.all(axis=2)).sum())
        raise DatasetError(
            f"{path}: {bad} pixel(s) with NaN/inf coordinates; expected finite values"
        )
    return arr


def write_xyz_tiff(path: PathLike, xyz: np.ndarray, atomic: bool = True) -> None:
    import tifffile

    buf = io.BytesIO()
    arr = np.ascontiguousarray(xyz, dtype=np.float32)
    tifffile.imwrite(buf, arr, photometric="rgb" if arr.ndim == 3 and arr.shape[2] == 3 else None)
    _write(path, buf.getvalue(), atomic)


def _open_image(path: PathLike, what: str):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: {what} not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable or truncated {what} ({err})") from err
    return img


def read_rgb_png(path: PathLike) -> np.ndarray:
    """Reads an image as uint8 (H,W,3) (grey or RGBA images are converted)."""
    img = _open_image(path, "RGB image")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def read_mask_png(path: PathLike) -> np.ndarray:
    """Reads a GT mask as uint8 (H,W) of 0/1: any value above 0 is anomalous (MVTec 3D-AD stores
    class ids 253-255, Eyecandies 255). Colour masks count a pixel when any channel is > 0."""
    img = _open_image(path, "GT mask")
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise DatasetError(f"{path}: expected a 2-D mask, got shape {arr.shape}")
    return (arr > 0).astype(np.uint8)


def read_depth_png(path: PathLike) -> np.ndarray:
    """Reads a 16-bit depth PNG as uint16 (H,W)."""
    img = _open_image(path, "depth PNG")
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise DatasetError(
            f"{path}: expected a single-channel 16-bit depth PNG, got shape {arr.shape}"
        )
    if arr.dtype not in (np.uint16, np.int32, np.uint8):
        raise DatasetError(f"{path}: expected a 16-bit depth PNG, got dtype {arr.dtype}")
    return arr.astype(np.uint16)


def write_png(path: PathLike, image: np.ndarray, atomic: bool = True) -> None:
    """Writes uint8 (H,W) / (H,W,3) or uint16 (H,W) arrays as PNG (atomically)."""
    from PIL import Image

    arr = np.ascontiguousarray(image)
    buf = io.BytesIO()
    if arr.dtype == np.uint16:
        img = Image.fromarray(arr)  # mode I;16
    else:
        img = Image.fromarray(arr.astype(np.uint8))
    img.save(buf, format="PNG")
    _write(path, buf.getvalue(), atomic)
