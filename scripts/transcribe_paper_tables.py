"""Transcribes the paper tables into results/paper/<paper>/ (CSV + meta sidecar + run spec).

Kept as the record of how every CSV was derived: clean tab-separated tables are parsed straight
from the paper texts in ../shared/papers (no retyping), the garbled PointAD+ Table 1 is aligned
by hand below with the reasoning written into its sidecar notes, and 3DzAL main Tables 1-2 come
from ../shared/specs/3dzal.md section 8. Rerunning it regenerates every file of this folder:
``.venv/bin/python scripts/transcribe_paper_tables.py`` (needs the shared papers beside the
checkout).
"""
from __future__ import annotations

import csv
import re
import sys
import textwrap
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "paper"
SHARED = REPO.parent / "shared"
PAPERS = SHARED / "papers"

REAL3D = ["airplane", "car", "candybar", "chicken", "diamond", "duck", "fish", "gemstone",
          "seahorse", "shell", "starfish", "toffees"]

ZS_AUX = {
    "mvtec3d": ["carrot", "cookie", "dowel"],
    "eyecandies": ["Confetto", "LicoriceSandwich", "PeppermintCandy"],
    "real3d": ["seahorse", "shell", "starfish"],
}


def text(name: str) -> list[str]:
    return (PAPERS / name).read_text(encoding="utf-8").splitlines()


def write_csv(paper: str, table: str, header: list[str], rows: list[list[str]]) -> None:
    d = OUT / paper
    d.mkdir(parents=True, exist_ok=True)
    for r in rows:
        assert len(r) == len(header), (paper, table, r, header)
    with open(d / f"{table}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_yaml(paper: str, name: str, data: dict) -> None:
    d = OUT / paper
    d.mkdir(parents=True, exist_ok=True)
    header = ""
    if not name.endswith(".meta.yaml"):
        # run spec: the runner rejects unknown fields, so the notes become a comment header
        data = dict(data)
        notes = data.pop("notes", "")
        header = "".join("# " + line + "\n" for line in textwrap.wrap(
            f"Run spec regenerating our rows of {paper} {name[:-5]}. {notes}", 96))
        from benchmark.run.spec import spec_from_dict
        spec_from_dict(data, source=name)
    with open(d / name, "w", encoding="utf-8") as f:
        f.write(header)
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True, width=100)


def meta(paper, table, caption, dataset, protocol, metrics, scale, row_keys, category_map,
         method_map, notes, **extra) -> dict:
    m = {
        "paper": paper, "table": table, "caption": caption, "dataset": dataset,
        "protocol": protocol, "metrics": metrics,
    }
    if "metric" in extra:
        m["metric"] = extra.pop("metric")
    m.update({"scale": scale, "row_keys": row_keys, "category_map": category_map})
    m.update({k: v for k, v in extra.items() if k not in ("source",)})
    m["method_map"] = method_map
    m["source"] = extra.get("source")
    m["notes"] = notes
    return m


def cell(row, column: str, reason: str) -> dict:
    """Annotation of one cell: row = {row_key: value} (a bare string means the method label)."""
    return {"row": row if isinstance(row, dict) else {"method": row}, "column": column,
            "reason": reason}


def split_tabs(line: str) -> list[str]:
    return [c.strip() for c in line.split("\t")]


# --------------------------------------------------------------------------------------------
# PointAD+
# --------------------------------------------------------------------------------------------

P = "pointad_plus"
PA_SRC = "../shared/papers/pointad_plus.txt"
PA_SETUP = ("PointAD+ paper Sec. 4.1 'Evaluation setting and metric' (one-vs-rest with auxiliary "
            "objects carrot/cookie/dowel, Confetto/LicoriceSandwich/PeppermintCandy, "
            "seahorse/shell/starfish; results averaged over the three auxiliary objects, Sec. 4.2) "
            "and 'Implementation details' (336x336, 9 views, ViT-L/14@336px, background plane "
            "removed like BTF [19]). Metric computation follows the official PointAD code "
            "(specs/methods.md 1.6: AUROC/AP sklearn, pixel metrics over the full 336x336 grid, "
            "cflow-style AUPRO with 200 thresholds). Seed 111 = official PointAD train.sh seed.")

MULTI_DS_NOTE = (
    "aux_categories is omitted on purpose: it would apply to every listed dataset, and the "
    "zero_shot protocol's defaults (run/protocols.py DEFAULT_AUX) are exactly the paper's "
    "per-dataset auxiliary objects. The paper removes the MVTec3D-AD background plane like BTF: "
    "dataset_options sets preprocess: btf for mvtec3d alone. ")

#: run-spec label suffix per modality, used where one spec runs a preset in both modalities
MOD_SUFFIX = {"points": "", "points+rgb": "+rgb"}

ZS_EVAL = {"grid": 336, "domain": "all", "aupro_mode": "cflow200", "aupro_limit": 0.3,
           "aupr_variant": "ap"}

PA_ROWS_MAP = {
    "CLIP + R.": "clip_rendering", "Cheraghian": None, "PointCLIP V2": None,
    "PointCLIP V2 _a": None, "AnomalyCLIP": None, "PointAD-CoOp": "pointad_coop",
    "PointAD": "pointad", "PointAD+CoOp": "pointad_plus_coop", "PointAD+-CoOp": "pointad_plus_coop",
    "PointAD+": "pointad_plus",
}


def pa_methods(labels, modality):
    out = []
    for lab in labels:
        preset = PA_ROWS_MAP.get(lab)
        if preset:
            out.append({"name": preset, "args": {"modality": modality}})
    return out


def pointad_plus() -> None:
    L = text("pointad_plus.txt")
    idx = {i: l for i, l in enumerate(L, 1)}

    # ---------------- Table 1 (garbled in the extraction, aligned by hand) ----------------
    assert idx[227].startswith("Dataset\tDetec.") and idx[237].startswith("PointAD+\t")
    t1_cols = ["MVTec3D-AD(10) P-AUROC", "MVTec3D-AD(10) AUPRO", "Eyecandies(10) P-AUROC",
               "Eyecandies(10) AUPRO", "Real3D-AD(12) P-AUROC", "MVTec3D-AD(10) I-AUROC",
               "MVTec3D-AD(10) AP", "Eyecandies(10) I-AUROC"]
    raw = {split_tabs(idx[i])[0]: split_tabs(idx[i])[1:] for i in range(229, 238)}
    for k, v in raw.items():
        assert len(v) == 8, (k, v)
    t1 = []
    # rows whose first token is a detection-level marker ("-" placeholder / "L."): 7 values
    for lab in ["CLIP + R.", "Cheraghian", "PointCLIP V2", "PointCLIP V2 _a", "AnomalyCLIP",
                "PointAD-CoOp", "PointAD", "PointAD+CoOp", "PointAD+"]:
        toks = raw[lab]
        if lab == "CLIP + R.":
            vals = toks  # 8 values, the leading "-" is the MVTec P-AUROC (Tables 2/6 agree)
        elif lab == "Cheraghian":
            # tokens "- 88.2 57.0 - - 53.6 81.7 49.5": 3 dashes + 5 numbers = 8 values;
            # Table 5 gives local (88.2, 57.0) and global (53.6, 81.7)
            vals = [toks[1], toks[2], "-", "-", "-", toks[5], toks[6], toks[7]]
            assert toks[0] == toks[3] == toks[4] == "-"
        elif lab.startswith("PointCLIP V2"):
            # tokens "- a b c d e f g": the dash is the Eyecandies AUPRO (dash there in Tables 2-4)
            assert toks[0] == "-"
            vals = [toks[1], toks[2], toks[3], "-", toks[4], toks[5], toks[6], toks[7]]
        else:
            assert toks[0] in ("-", "L."), toks
            vals = toks[1:] + [""]
        t1.append([lab] + vals)
    write_csv(P, "table1", ["method"] + t1_cols, t1)
    unread = [cell(r[0], "Eyecandies(10) I-AUROC", "not in the text extraction (row truncated)")
              for r in t1 if r[-1] == ""]
    colmap1 = {
        "MVTec3D-AD(10) P-AUROC": {"dataset": "mvtec3d", "metric": "pixel_auroc"},
        "MVTec3D-AD(10) AUPRO": {"dataset": "mvtec3d", "metric": "aupro"},
        "Eyecandies(10) P-AUROC": {"dataset": "eyecandies", "metric": "pixel_auroc"},
        "Eyecandies(10) AUPRO": {"dataset": "eyecandies", "metric": "aupro"},
        "Real3D-AD(12) P-AUROC": {"dataset": "real3d", "metric": "point_auroc"},
        "MVTec3D-AD(10) I-AUROC": {"dataset": "mvtec3d", "metric": "image_auroc"},
        "MVTec3D-AD(10) AP": {"dataset": "mvtec3d", "metric": "image_ap"},
        "Eyecandies(10) I-AUROC": {"dataset": "eyecandies", "metric": "image_auroc"},
    }
    for c in colmap1.values():
        c["aggregate"] = "mean over test categories, then over the 3 auxiliary categories"
    write_yaml(P, "table1.meta.yaml", meta(
        P, "table1",
        "Performance comparison on ZS 3D anomaly detection in \"one-vs-rest\" setting. Note that "
        "RealAD-3D could not compute the AUPRO. The number in brackets next to the dataset name "
        "indicates its number of object categories.",
        None, "zero_shot",
        {"P-AUROC": ["pixel_auroc", "point_auroc"], "AUPRO": "aupro", "I-AUROC": "image_auroc",
         "AP": "image_ap"},
        100, ["method"], {}, PA_ROWS_MAP_T(t1), (
            "SHAPE: text extraction gives 9 rows x 8 value tokens (plus a 'Detec. level' token). "
            "The printed table evidently has more columns (Eyecandies I-AUROC/AP and Real3D-AD "
            "I-AUROC/AP in the global block, cf. Table 3 and the PointAD README numbers in "
            "specs/methods.md 1.7); the extraction kept only 8 tokens per row, so the missing "
            "columns are absent here and cells listed in empty_cells are empty. "
            "ALIGNMENT (inferred, see uncertain_cells): rows whose first token is a level marker "
            "('-' placeholder, 'L.' for AnomalyCLIP) carry 7 values = MVTec P-AUROC, AUPRO, "
            "Eyecandies P-AUROC, AUPRO, Real3D-AD P-AUROC, MVTec I-AUROC, AP (confirmed for "
            "PointAD, PointAD+ and AnomalyCLIP by Table 5, Sec. 4.2 text and the PointAD README "
            "[Eyecandies 92.1/71.3, Real3D P-AUROC 73.5]). 'CLIP + R.' has 8 genuine values "
            "starting with P-AUROC '-' (Table 6 vanilla row '(-, 54.4)' and text 'from 61.2% to "
            "82.0% I-AUROC and from 85.8% to 94.2% AP'). Cheraghian and PointCLIP V2(_a) rows "
            "start with a '-' that cannot be a level marker (it would put AP < 50 at I-AUROC ~80 "
            "on MVTec 3D-AD where ~79% of test samples are anomalous, and contradict Table 5 "
            "'(53.6, 81.7)' for Cheraghian); the dash was placed in the Eyecandies columns "
            "(Eyecandies AUPRO '-' for PointCLIP V2 as in Tables 2-4). The 'Detec. level' "
            "columns are dropped. Sec. 4.2 text quotes slightly different PointAD+ numbers "
            "(96.8 P-AUROC, 88.4 AUPRO) than the table (96.9, 88.7): the table is transcribed."),
        metric=None, column_map=colmap1, empty_cells=unread,
        uncertain_cells=[
            cell("CLIP + R.", "*", "row read as 8 values without a level marker"),
            cell("Cheraghian", "Eyecandies(10) P-AUROC", "position of the three dashes inferred"),
            cell("Cheraghian", "Eyecandies(10) AUPRO", "position of the three dashes inferred"),
            cell("Cheraghian", "Real3D-AD(12) P-AUROC", "position of the three dashes inferred"),
            cell("Cheraghian", "Eyecandies(10) I-AUROC", "49.5 placed here by the 8-value reading"),
            cell("PointCLIP V2", "*", "leading '-' read as Eyecandies AUPRO; values shifted"),
            cell("PointCLIP V2 _a", "*", "leading '-' read as Eyecandies AUPRO; values shifted"),
        ],
        source=f"{PA_SRC} lines 225-237"))
    write_yaml(P, "table1.yaml", {
        "name": "pointad_plus_table1",
        "methods": pa_methods([r[0] for r in t1], "points"),
        "dataset": ["mvtec3d", "eyecandies", "real3d"],
        "root": None,
        "protocol": "zero_shot",
        "categories": "all",
        "seeds": [111],
        "evaluation": ZS_EVAL,
        "dataset_options": {"mvtec3d": {"preprocess": "btf"}},
        "notes": MULTI_DS_NOTE + PA_SETUP,
    })

    # ---------------- Table 2 (clean) ----------------
    assert idx[252].startswith("Dataset Metric") and idx[262].startswith("PointAD+\t")
    t2_cols = ["MVTec3D-AD(10) P-AUROC", "MVTec3D-AD(10) AUPRO", "Eyecandies(10) P-AUROC",
               "Eyecandies(10) AUPRO", "MVTec3D-AD(10) I-AUROC", "MVTec3D-AD(10) AP",
               "Eyecandies(10) I-AUROC", "Eyecandies(10) AP"]
    t2 = []
    for i in range(254, 263):
        c = split_tabs(idx[i])
        assert len(c) == 11, c
        assert c[1] in ("", "ML.") and c[6] in ("", "MG."), c
        t2.append([c[0]] + c[2:6] + c[7:11])
    write_csv(P, "table2", ["method"] + t2_cols, t2)
    colmap2 = {k: dict(v) for k, v in colmap1.items() if k in t2_cols}
    colmap2["Eyecandies(10) AP"] = {"dataset": "eyecandies", "metric": "image_ap"}
    for c in colmap2.values():
        c["aggregate"] = "mean over test categories, then over the 3 auxiliary categories"
        c["modality"] = "points+rgb"
    write_yaml(P, "table2.meta.yaml", meta(
        P, "table2",
        "Performance comparison on ZS M3D anomaly detection in \"one-vs-rest\" setting.",
        None, "zero_shot",
        {"P-AUROC": "pixel_auroc", "AUPRO": "aupro", "I-AUROC": "image_auroc", "AP": "image_ap"},
        100, ["method"], {}, PA_ROWS_MAP_T(t2),
        ("SHAPE: 9 rows x 8 value columns, clean tab-separated extraction (the two 'Detec. level' "
         "columns, ML./MG., are dropped). ZS M3D = point cloud + RGB at test time "
         "(Sec. 3.6.2 'ZS M3D inference'); Real3D-AD has no RGB so it is absent."),
        metric=None, column_map=colmap2, source=f"{PA_SRC} lines 250-262"))
    write_yaml(P, "table2.yaml", {
        "name": "pointad_plus_table2",
        "methods": pa_methods([r[0] for r in t2], "points+rgb"),
        "dataset": ["mvtec3d", "eyecandies"],
        "root": None,
        "protocol": "zero_shot",
        "categories": "all",
        "seeds": [111],
        "evaluation": ZS_EVAL,
        "dataset_options": {"mvtec3d": {"preprocess": "btf"}},
        "notes": "Multimodal (points+rgb) test-time fusion. " + MULTI_DS_NOTE + PA_SETUP,
    })

    # ---------------- Tables 3 and 4 (cross-dataset) ----------------
    cross_cols = ["Eyecandies AUROC", "Eyecandies PRO", "Real3D-AD AUROC", "Eyecandies I-AUROC",
                  "Eyecandies AP", "Real3D-AD I-AUROC"]
    cross_map = {
        "Eyecandies AUROC": {"dataset": "eyecandies", "metric": "pixel_auroc"},
        "Eyecandies PRO": {"dataset": "eyecandies", "metric": "aupro"},
        "Real3D-AD AUROC": {"dataset": "real3d", "metric": "point_auroc"},
        "Eyecandies I-AUROC": {"dataset": "eyecandies", "metric": "image_auroc"},
        "Eyecandies AP": {"dataset": "eyecandies", "metric": "image_ap"},
        "Real3D-AD I-AUROC": {"dataset": "real3d", "metric": "image_auroc"},
    }
    for tname, start, end, modality, cap in [
        ("table3", 266, 273, "points",
         "Performance comparison on ZS 3D anomaly detection in cross-dataset setting. Note that "
         "RealAD-3D could not compute the AUPRO."),
        ("table4", 281, 288, "points+rgb",
         "Performance comparison on ZS M3D anomaly detection in cross-dataset setting."),
    ]:
        assert idx[start].startswith("Dataset Metric"), idx[start]
        rows = []
        for i in range(start + 2, end + 1):
            c = split_tabs(idx[i])
            assert len(c) == 9, c
            assert c[1] in ("", "L.", "ML.") and c[5] in ("", "G.", "MG."), c
            rows.append([c[0]] + c[2:5] + c[6:9])
        write_csv(P, tname, ["method"] + cross_cols, rows)
        cm = {k: dict(v, modality=modality,
                      aggregate="mean over target categories, then over the 3 MVTec3D-AD source "
                                "(auxiliary) categories") for k, v in cross_map.items()}
        notes = ("SHAPE: 6 rows x 6 value columns in the extraction ('Detec. level' columns "
                 "dropped). Cross-dataset: trained on an MVTec3D-AD auxiliary object, tested on "
                 "every object of the target dataset (Sec. 4.1 'Evaluation setting', Sec. 4.2 "
                 "'Cross-dataset ZS anomaly detection'; Fig. 5 caption uses the model trained on "
                 "MVTec3D-AD 'cookie'; PointAD README: 'trained on MVTec classes'). ")
        if tname == "table3":
            notes += ("The printed table very likely also has a Real3D-AD AP column that the "
                      "extraction dropped (Sec. 4.2 quotes 'AP declining from 84.7% to 78.2%' and "
                      "the PointAD README gives Real3D-AD cross-dataset AP 77.9 for PointAD); "
                      "it is absent here. Header names AUROC/PRO are as printed (= P-AUROC/AUPRO).")
            ds = ["eyecandies", "real3d"]
            ucells = []
        else:
            notes += ("SUSPECT COLUMNS: Real3D-AD has no RGB, and in every row the 'Real3D-AD "
                      "AUROC' value equals the following 'Eyecandies I-AUROC' value (except "
                      "PointCLIP V2 _a) and 'Real3D-AD I-AUROC' equals 'Eyecandies AP': the two "
                      "Real3D-AD columns look like extraction/layout duplicates. Transcribed as "
                      "given; the run spec covers Eyecandies only.")
            ds = ["eyecandies"]
            ucells = [cell(r[0], c, "duplicate-looking value") for r in rows
                      for c in ("Real3D-AD AUROC", "Real3D-AD I-AUROC")]
        extra = {"metric": None, "column_map": cm, "train_dataset": "mvtec3d",
                 "source": f"{PA_SRC} lines {start - 2}-{end}"}
        if ucells:
            extra["uncertain_cells"] = ucells
        write_yaml(P, f"{tname}.meta.yaml", meta(
            P, tname, cap, None, "cross_dataset",
            {"AUROC": ["pixel_auroc", "point_auroc"], "PRO": "aupro",
             "I-AUROC": "image_auroc", "AP": "image_ap"},
            100, ["method"], {}, PA_ROWS_MAP_T(rows), notes, **extra))
        write_yaml(P, f"{tname}.yaml", {
            "name": f"pointad_plus_{tname}",
            "methods": pa_methods([r[0] for r in rows], modality),
            "dataset": ds if len(ds) > 1 else ds[0],
            "root": None,
            "protocol": "cross_dataset",
            "train_dataset": "mvtec3d",
            "categories": "all",
            "aux_categories": ZS_AUX["mvtec3d"],
            "seeds": [111],
            "evaluation": ZS_EVAL,
            "dataset_options": {},
            "train_dataset_options": {"preprocess": "btf"},
            "notes": ("aux_categories are categories of train_dataset (MVTec3D-AD, BTF-style "
                      "background removal as in the paper). " + PA_SETUP),
        })

    # ---------------- Table 5 (overhead) ----------------
    assert idx[334].startswith("Methods\tInference time")
    t5_cols = ["Inference time (s)", "FPS", "GPU memory usage (Peak) [MB]",
               "Point detection Local P-AUROC", "Point detection Local AUPRO",
               "Point detection Global I-AUROC", "Point detection Global AP"]
    t5 = []
    for i in range(336, 345):
        c = split_tabs(idx[i])
        assert len(c) == 6 and c[3].endswith("MB"), c
        loc, glo = pair(c[4]), pair(c[5])
        t5.append([c[0], c[1], c[2], c[3][:-2]] + loc + glo)
    write_csv(P, "table5", ["method"] + t5_cols, t5)
    t5_map = {"BTF (Un.)": "btf_fpfh", "SDM (Un.)": None, "M3DM (Un.)": "m3dm",
              "PointCLIP V2 (ZS)": None, "CLIP + Rendering (ZS)": "clip_rendering",
              "Cheraghian (ZS)": None, "AnomalyCLIP (ZS)": None, "PointAD (ZS)": "pointad",
              "PointAD+ (ZS)": "pointad_plus"}
    write_yaml(P, "table5.meta.yaml", meta(
        P, "table5", "Comparison of computation overhead with SOTA approaches on MVtec3D-AD.",
        "mvtec3d", "zero_shot",
        {"Inference time (s)": "predict_seconds_per_sample", "FPS": "fps",
         "GPU memory usage (Peak)": "peak_gpu_memory_mb",
         "P-AUROC": "pixel_auroc", "AUPRO": "aupro", "I-AUROC": "image_auroc", "AP": "image_ap"},
        100, ["method"], {}, t5_map,
        ("SHAPE: 9 rows x 5 printed columns; the two 'Point detection' cells are printed as pairs "
         "'(a, b)' and are split here into two columns each (Local = (P-AUROC, AUPRO), Global = "
         "(I-AUROC, AP) as in Table 6 / Sec. 4.2); the memory unit 'MB' is moved into the header. "
         "scale 100 applies to the detection columns only. Un. rows are one-class (unsupervised) "
         "methods, ZS rows zero-shot. INCONSISTENCIES IN THE PAPER: the CLIP + Rendering pairs are "
         "swapped relative to Tables 1/6 (its 'Local' (61.2, 85.8) is the global pair), and "
         "PointCLIP V2 'Global' (78.3, 49.4) equals its Table 2 M3D local pair; PointAD+ "
         "Global (82.5, 94.8) matches Table 6. 'BTF (Un.)' is mapped to btf_fpfh (point-only "
         "detection column; the paper does not say which BTF variant) - uncertain. Timings were "
         "measured on an RTX 3090 (Sec. 4.3.4)."),
        metric=None,
        column_map={
            "Inference time (s)": {"dataset": "mvtec3d", "metric": "predict_seconds_per_sample"},
            "FPS": {"dataset": "mvtec3d", "metric": "fps"},
            "GPU memory usage (Peak) [MB]": {"dataset": "mvtec3d", "metric": "peak_gpu_memory_mb"},
            "Point detection Local P-AUROC": {"dataset": "mvtec3d", "metric": "pixel_auroc"},
            "Point detection Local AUPRO": {"dataset": "mvtec3d", "metric": "aupro"},
            "Point detection Global I-AUROC": {"dataset": "mvtec3d", "metric": "image_auroc"},
            "Point detection Global AP": {"dataset": "mvtec3d", "metric": "image_ap"},
        },
        uncertain_cells=[
            cell("CLIP + Rendering (ZS)", "*", "pairs swapped relative to Tables 1/6"),
            cell("PointCLIP V2 (ZS)", "Point detection Global I-AUROC",
                 "equals Table 2 M3D P-AUROC"),
            cell("PointCLIP V2 (ZS)", "Point detection Global AP", "equals Table 2 M3D AUPRO")],
        source=f"{PA_SRC} lines 332-344"))
    write_yaml(P, "table5.yaml", {
        "name": "pointad_plus_table5",
        "methods": [{"name": m, "args": {"modality": "points"}}
                    for m in ("clip_rendering", "pointad", "pointad_plus")],
        "dataset": "mvtec3d", "root": None, "protocol": "zero_shot", "categories": "all",
        "aux_categories": ZS_AUX["mvtec3d"], "seeds": [111], "evaluation": ZS_EVAL,
        "dataset_options": {"preprocess": "btf"},
        "notes": ("Covers the ZS rows that are our presets (timings come from the runner's "
                  "per-job fit/predict timings and peak memory). The 'BTF (Un.)' row is a "
                  "one-class method and needs a separate one_class run (btf_fpfh, grid 224, "
                  "aupro_mode mvtec3d_sampled). " + PA_SETUP),
    })

    # ---------------- Table 6 (module ablation) ----------------
    assert idx[352].startswith("TABLE 6") and idx[354].startswith("L^r")
    comp = ["L_{I=3d}^{global}", "L_{I=3d}^{local}", "L_{I=2d}^{global}", "L_{I=2d}^{local}",
            "L^g F stage", "L^g S stage", "L^{cross}"]
    pair_cols = []
    for blk in ("Point detection", "Multimodal detection"):
        pair_cols += [f"{blk} Local P-AUROC", f"{blk} Local AUPRO", f"{blk} Global I-AUROC",
                      f"{blk} Global AP"]
    t6 = []
    for k, i in enumerate(range(356, 366), 1):
        c = idx[i].split("\t")
        assert len(c) == 12, (i, c)
        checks = ["✓" if x.strip() == "✓" else "" for x in c[:7]]
        assert c[7].strip() == "", c
        vals = []
        for x in c[8:12]:
            vals += pair(x)
        t6.append([f"row{k}"] + checks + vals)
    write_csv(P, "table6", ["method"] + comp + pair_cols, t6)
    write_yaml(P, "table6.meta.yaml", meta(
        P, "table6",
        "Ablation on the proposed modules. F stage and S stage. represent the first and second "
        "stages of G-aggregation, respectively.",
        "mvtec3d", "zero_shot",
        {"P-AUROC": "pixel_auroc", "AUPRO": "aupro", "I-AUROC": "image_auroc", "AP": "image_ap"},
        100, ["method"] + comp, {},
        {"row1": "clip_rendering", "row2": None, "row3": None, "row4": None, "row5": None,
         "row6": None, "row7": "pointad", "row8": None, "row9": None, "row10": "pointad_plus"},
        ("SHAPE: 10 rows x (7 check-mark columns + 4 pair cells). Rows have no printed label: "
         "'method' is rowN (N = printed order) and the check-mark columns (as printed, '✓' or "
         "empty; 'I=3d' is the extraction of 'I-3d') are row keys. Each '(a, b)' pair is split "
         "into two columns: Local = (P-AUROC, AUPRO), Global = (I-AUROC, AP); Point detection = "
         "ZS 3D, Multimodal detection = ZS M3D (points+rgb). Dataset: MVTec3D-AD (the numbers of "
         "rows 7 and 10 equal the MVTec3D-AD PointAD / PointAD+ numbers of Tables 1-2). "
         "Row 1 is the 'vanilla' CLIP + rendering baseline (Sec. 5 text) although the "
         "extraction shows a check in its first column (same as row 2) - likely a misprint or "
         "extraction error. Row 7 is mapped to pointad because its values are identical to "
         "PointAD's in Tables 1/2 although its check marks omit L_{I-2d}^{local} (which "
         "PointAD's hybrid loss includes, Sec. 3.5) - mapping by values, flagged."),
        metric=None,
        column_map={c: {"dataset": "mvtec3d",
                        "metric": {"P-AUROC": "pixel_auroc", "AUPRO": "aupro",
                                   "I-AUROC": "image_auroc", "AP": "image_ap"}[c.split()[-1]],
                        "modality": "points" if c.startswith("Point") else "points+rgb"}
                    for c in pair_cols},
        uncertain_cells=[cell("row1", "L_{I=3d}^{global}", "check mark on the vanilla row")],
        source=f"{PA_SRC} lines 352-365"))
    write_yaml(P, "table6.yaml", {
        "name": "pointad_plus_table6",
        "methods": [{"name": m, "args": {"modality": mod}, "label": m + MOD_SUFFIX[mod]}
                    for m in ("clip_rendering", "pointad", "pointad_plus")
                    for mod in ("points", "points+rgb")],
        "dataset": "mvtec3d", "root": None, "protocol": "zero_shot", "categories": "all",
        "aux_categories": ZS_AUX["mvtec3d"], "seeds": [111], "evaluation": ZS_EVAL,
        "dataset_options": {"preprocess": "btf"},
        "notes": ("Regenerates rows 1 (clip_rendering), 7 (pointad) and 10 (pointad_plus); the "
                  "intermediate loss ablations are not presets. Labels: '<preset>' = points "
                  "(Point detection columns), '<preset>+rgb' = points+rgb (Multimodal detection "
                  "columns). " + PA_SETUP),
    })

    # ---------------- Tables 8, 9, 10 (PointAD+ hyper-parameter ablations) ----------------
    specs = [
        ("table8", 367, "Length of learnable prompt", True,
         "Ablation on learnable prompt length.", 371, 375),
        ("table9", 377, "Downsample ratio", False, "Density ablation.", 381, 385),
        ("table10", 387, "Lighting", False, "Lighting ablation.", 391, 395),
    ]
    for tname, cap_line, key, has_mm, cap, r0, r1 in specs:
        assert idx[cap_line].startswith("TABLE " + tname[5:]), (tname, idx[cap_line])
        assert idx[cap_line + 2].startswith(key), idx[cap_line + 2]
        blocks = ["Point detection"] + (["Multimodal detection"] if has_mm else [])
        cols = []
        for blk in blocks:
            cols += [f"{blk} Local P-AUROC", f"{blk} Local AUPRO", f"{blk} Global I-AUROC",
                     f"{blk} Global AP"]
        rows = []
        for i in range(r0, r1 + 1):
            c = split_tabs(idx[i])
            assert len(c) == 1 + 2 * len(blocks), c
            vals = []
            for x in c[1:]:
                vals += pair(x)
            rows.append(["PointAD+", c[0]] + vals)
        notes = (f"SHAPE: {len(rows)} rows x {2 * len(blocks)} pair cells, each '(a, b)' split "
                 "into "
                 "two columns (Local = (P-AUROC, AUPRO), Global = (I-AUROC, AP)). The ablated "
                 "model is PointAD+ (caption/Sec. 5); 'method' is that implied name and the "
                 f"printed row label is in '{key}'. Dataset MVTec3D-AD, ZS one-vs-rest (the "
                 "default rows equal the MVTec3D-AD PointAD+ numbers of Tables 1-2). ")
        if tname == "table8":
            notes += "Default = 12 (Sec. 4.1 'Implementation details')."
            default = "12"
        elif tname == "table9":
            notes += ("Test clouds down-sampled with FPS to the given ratio, model trained on the "
                      "original data (Sec. 5 'Ablation on input density'). Default = 100%.")
            default = "100%"
        else:
            notes += ("Rendering lighting varied at test time (Sec. 5 'Ablation on rendering "
                      "lighting': '++', '+', original, '-', '--'). The extraction prints '-' for "
                      "both of the last two rows; the last one is transcribed as '--' (weakest "
                      "lighting) following the text. Default = original.")
            default = "original"
            rows[-1][1] = "--"
        write_csv(P, tname, ["method", key] + cols, rows)
        um = {}
        if tname == "table10":
            um["uncertain_cells"] = [cell({"method": "PointAD+", key: "--"}, key,
                                          "printed '-' in the extraction, transcribed '--'")]
        write_yaml(P, f"{tname}.meta.yaml", meta(
            P, tname, cap, "mvtec3d", "zero_shot",
            {"P-AUROC": "pixel_auroc", "AUPRO": "aupro", "I-AUROC": "image_auroc",
             "AP": "image_ap"},
            100, ["method", key], {}, {"PointAD+": "pointad_plus"}, notes, metric=None,
            default_setting=default,
            column_map={c: {"dataset": "mvtec3d",
                            "metric": {"P-AUROC": "pixel_auroc", "AUPRO": "aupro",
                                       "I-AUROC": "image_auroc", "AP": "image_ap"}[c.split()[-1]],
                            "modality": "points" if c.startswith("Point") else "points+rgb"}
                        for c in cols},
            source=f"{PA_SRC} lines {cap_line}-{r1}", **um))
        if tname == "table8":
            methods = [{"name": "pointad_plus", "args": {"modality": mod},
                        "grid": {"n_ctx": [6, 8, 10, 12, 14]},
                        "label": "pointad_plus" + MOD_SUFFIX[mod]}
                       for mod in ("points", "points+rgb")]
            snote = ("One variant per prompt length via grid over n_ctx (number of learnable word "
                     "embeddings, paper default 12; constructor argument of methods/pointad). "
                     "Labels: 'pointad_plus(n_ctx=L)' for points, 'pointad_plus+rgb(n_ctx=L)' "
                     "for points+rgb. ")
        else:
            methods = [{"name": "pointad_plus", "args": {"modality": "points"}}]
            snote = (f"Regenerates only the default row ('{default}'); the other rows need a "
                     + ("test-time FPS down-sampling option" if tname == "table9"
                        else "rendering-lighting option")
                     + " that the framework does not define. ")
        write_yaml(P, f"{tname}.yaml", {
            "name": f"pointad_plus_{tname}", "methods": methods, "dataset": "mvtec3d",
            "root": None, "protocol": "zero_shot", "categories": "all",
            "aux_categories": ZS_AUX["mvtec3d"], "seeds": [111], "evaluation": ZS_EVAL,
            "dataset_options": {"preprocess": "btf"}, "notes": snote + PA_SETUP,
        })


def PA_ROWS_MAP_T(rows):
    return {r[0]: PA_ROWS_MAP[r[0]] for r in rows}


def pair(cell: str) -> list[str]:
    m = re.fullmatch(r"\(\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\)", cell.strip())
    assert m, cell
    return [m.group(1), m.group(2)]


# --------------------------------------------------------------------------------------------
# 3DzAL supplement + main tables (spec 8)
# --------------------------------------------------------------------------------------------

Z = "3dzal"
Z_SRC = "../shared/papers/3dzal_supplement.txt"
Z_CATS = {"bagel": "bagel", "cable": "cable_gland", "carrot": "carrot", "cookie": "cookie",
          "dowel": "dowel", "foam": "foam", "peach": "peach", "potato": "potato", "rope": "rope",
          "tire": "tire"}
Z_EVAL = {"grid": 224, "domain": "all", "aupro_mode": "mvtec3d_sampled", "aupro_limit": 0.3,
          "aupr_variant": "ap"}
Z_SETUP = ("3DzAL setting (specs/3dzal.md 1): zero-shot pairs on MVTec 3D-AD - fit on the normal "
           "train split of class A, test on each class B != A (90 trials); a row = train class, "
           "'mean' = mean over its 9 test classes. Supplement D: one run, seed 0. Evaluation as "
           "BTF (specs/3dzal.md 1 [INF]: 224x224, MVTec 3D-AD sampled AU-PRO at FPR 0.3 with 100 "
           "thresholds). BTF preprocessing is not stated ([DEF] raw data, 3dzal.md 9.12).")


def dzal() -> None:
    L = text("3dzal_supplement.txt")
    header_lines = [i for i, l in enumerate(L) if l.startswith("train\\test")]
    assert len(header_lines) == 9, header_lines
    captions = {}
    for i, l in enumerate(L):
        m = re.match(r"Table (\d+)\. (.*)", l.strip())
        if m:
            captions[int(m.group(1))] = (i, m.group(2))
    methods = {7: "3DSR", 8: "BTF", 9: "BTF", 10: "3DSR",
               11: "3DzAL w/o L_rd, C_w, input perturbation",
               12: "3DzAL w/o C_w, input perturbation", 13: "3DzAL w/o input perturbation",
               14: "3DzAL only adding-point", 15: "3DzAL only removing-point"}
    preset = {"3DSR": None, "BTF": "btf_rgb_fpfh",
              "3DzAL w/o L_rd, C_w, input perturbation": "3dzal_no_rd_cw_perturb",
              "3DzAL w/o C_w, input perturbation": "3dzal_no_cw",
              "3DzAL w/o input perturbation": "3dzal_no_perturb",
              "3DzAL only adding-point": "3dzal_no_removing",
              "3DzAL only removing-point": "3dzal_no_adding"}
    for tnum, h in zip(range(7, 16), header_lines):
        cap_i, cap = captions[tnum]
        assert cap_i > h
        hdr = split_tabs(L[h])
        cols = hdr[1:]
        assert cols == ["bagel", "cable", "carrot", "cookie", "dowel", "foam", "peach", "potato",
                        "rope", "tire", "mean"], cols
        rows = []
        for i in range(h + 1, cap_i):
            if not L[i].strip():
                continue
            c = split_tabs(L[i])
            assert len(c) == 12, c
            rows.append([methods[tnum], c[0]] + c[1:])
        expect = 10 if tnum <= 10 else 3
        assert len(rows) == expect, (tnum, len(rows))
        metric = "image_auroc" if tnum in (7, 8) else "aupro"
        printed_metric = ("image-level AUROC (%)" if metric == "image_auroc"
                          else "pixel-level AUPRO (%)")
        tname = f"table{tnum}"
        mname = methods[tnum]
        notes = (f"SHAPE: {len(rows)} rows (train class) x 11 columns (10 test classes + mean). "
                 "The printed row label (train class) is in 'train' (printed header "
                 "'train\\test'); "
                 "'method' is the method named in the caption. Diagonal cells are '-'. "
                 "category_map applies to both the test-class columns and the train row labels. ")
        if tnum >= 11:
            notes += ("Ablation rows as printed: Supplement B says the ablations use training "
                      "classes bagel, carrot and peach, but Tables 11-13 print bagel/dowel/foam "
                      "and Tables 14-15 bagel/potato/rope. ")
        extra = {}
        if tnum == 14:
            notes += ("Row 'potato' prints '-' under 'peach' and 87.9 under 'potato' (the diagonal "
                      "should be 'potato'); transcribed as printed, likely swapped cells. ")
            extra["uncertain_cells"] = [
                cell({"method": mname, "train": "potato"}, "peach", "'-' off the diagonal"),
                cell({"method": mname, "train": "potato"}, "potato", "value on the diagonal")]
        if tnum == 15:
            notes += ("Row 'potato' prints '-' under 'peach' and 88.6 under 'potato' as in "
                      "Table 14; transcribed as printed. ")
            extra["uncertain_cells"] = [
                cell({"method": mname, "train": "potato"}, "peach", "'-' off the diagonal"),
                cell({"method": mname, "train": "potato"}, "potato", "value on the diagonal")]
        write_csv(Z, tname, ["method", "train"] + cols, rows)
        cm = {k: v for k, v in Z_CATS.items()}
        write_yaml(Z, f"{tname}.meta.yaml", meta(
            Z, tname, cap, "mvtec3d", "zero_shot_pairs", {printed_metric: metric}, 100,
            ["method", "train"], cm, {mname: preset.get(mname, None)},
            notes + Z_SETUP, metric=metric, mean_column="mean", row_category_keys=["train"],
            source=f"{Z_SRC} lines {h + 1}-{cap_i + 1}", **extra))
        if preset.get(mname):
            train_rows = [r[1] for r in rows] if tnum >= 11 else None
            write_yaml(Z, f"{tname}.yaml", zspec(tname, [preset[mname]], train_rows))

    # main-paper Tables 1-2 from specs/3dzal.md 8 (figure transcription)
    spec_lines = (SHARED / "specs" / "3dzal.md").read_text(encoding="utf-8").splitlines()
    spec = "\n".join(spec_lines)
    num = r"(\d+(?:\.\d+)?)"
    cols = ["bagel", "cable", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope",
            "tire"]
    for tname, key, grid_key, metric, printed, cap in [
        ("main_table1", "Table 1 pixel AUPRO", "AUPRO   bagel", "aupro", "pixel AUPRO (%)",
         "3DzAL main paper Table 1: pixel-level AUPRO (%) under the zero-shot setting "
         "(rows = training class; mean over its 9 test classes)."),
        ("main_table2", "Table 2 image AUROC", "I-AUROC bagel", "image_auroc", "image AUROC (%)",
         "3DzAL main paper Table 2: image-level AUROC (%) under the zero-shot setting "
         "(rows = training class; mean over its 9 test classes)."),
    ]:
        start = spec.index(key)
        body = spec[start: spec.index("\n", spec.index("tire", start))]
        means = re.findall(r"(bagel|cable|carrot|cookie|dowel|foam|peach|potato|rope|tire) "
                           + num + "/" + num + "/" + num, body)
        assert [m[0] for m in means] == cols, means
        gi = next(i for i, l in enumerate(spec_lines) if l.startswith(grid_key))
        assert spec_lines[gi].split()[1:] == cols
        grid = {}
        for line in spec_lines[gi + 1: gi + 11]:
            t = line.split()
            assert len(t) == 11 and t[0] in cols, t
            grid[t[0]] = t[1:]
        rows = []
        for mi, mname in enumerate(["3DzAL", "BTF", "3DSR"]):
            for m in means:
                cells = grid[m[0]] if mname == "3DzAL" else [""] * 10
                rows.append([mname, m[0]] + cells + [m[1 + mi]])
        for r in rows[:10]:
            vals = [float(v) for v in r[2:12] if v != "-"]
            assert abs(sum(vals) / 9 - float(r[12])) <= 0.06, r
        empty = [cell({"method": r[0], "train": r[1]}, c,
                      "baseline per-pair cells are not in the main table (see supplement "
                      + ("Tables 9/10" if metric == "aupro" else "Tables 8/7") + ")")
                 for r in rows if r[0] != "3DzAL" for c in cols]
        write_csv(Z, tname, ["method", "train"] + cols + ["mean"], rows)
        write_yaml(Z, f"{tname}.meta.yaml", meta(
            Z, tname, cap, "mvtec3d", "zero_shot_pairs", {printed: metric}, 100,
            ["method", "train"], dict(Z_CATS),
            {"3DzAL": "3dzal", "BTF": "btf_rgb_fpfh", "3DSR": None},
            ("SOURCE: not the paper text - transcribed from ../shared/specs/3dzal.md section 8, "
             "which read the values off the project-page figure result.jpg (= main paper Tables "
             "1-2; row means re-verified there to +-0.05): the per-train-class means of 3DzAL / "
             "BTF / 3DSR and the per-pair 3DzAL cells (train -> test). Exact printed layout and "
             "labels of the figure are unknown (the supplement says it gives the 'complete' "
             "BTF/3DSR results, so the main tables hold 3DzAL per-pair cells and the baselines' "
             "means). Stored in the same layout as the supplement tables: row keys method + "
             "train, test-class columns + mean; 30 rows x 11 value columns, baseline per-pair "
             "cells empty (empty_cells). The 3DzAL row means equal the mean of its 9 cells to "
             "+-0.06 and the BTF/3DSR means equal the 'mean' columns of supplement Tables "
             "8/9 and 7/10. " + Z_SETUP),
            metric=metric, mean_column="mean", row_category_keys=["train"], empty_cells=empty,
            source="../shared/specs/3dzal.md section 8 (from project-page figure result.jpg)"))
        write_yaml(Z, f"{tname}.yaml", zspec(tname, ["3dzal", "btf_rgb_fpfh"]))


def zspec(tname: str, presets: list[str], train_rows: list[str] | None = None) -> dict:
    spec = {
        "name": f"3dzal_{tname}", "methods": presets, "dataset": "mvtec3d", "root": None,
        "protocol": "zero_shot_pairs", "categories": "all", "seeds": [0],
        "evaluation": Z_EVAL, "dataset_options": {},
        "notes": ("3dzal = our re-implementation (methods/zal3d, strict task-irrelevant data: "
                  "classes other than A and B); BTF = RGB + FPFH memory bank (3DzAL's baseline "
                  "and base, specs/3dzal.md 0/2). " + Z_SETUP),
    }
    if train_rows:
        spec["aux_categories"] = [Z_CATS[c] for c in train_rows]
        spec["notes"] += (" Training classes (rows) as printed: "
                          + ", ".join(spec["aux_categories"]) + " (aux_categories).")
    return spec


# --------------------------------------------------------------------------------------------
# IMRNet / Anomaly-ShapeNet
# --------------------------------------------------------------------------------------------

I = "imrnet"
I_SRC = "../shared/papers/imrnet_anomaly_shapenet.txt"
ASN_ORDER_NOTE = "jar0 is printed 'jar', microphone0 is printed 'phone' (specs/methods.md D4)."
ONE_CLASS_EVAL = {"grid": "native", "domain": "all", "aupr_variant": "ap"}
R3D_SETUP = ("Real3D-AD baseline setting (specs/methods.md 3.2/4): one-class, 4 normal templates "
             "per class, registration to the first template, per-point metrics over all points, "
             "AUPR = step AP (Real3D-AD average_precision_score, specs/metrics.md). Seed 42 = "
             "Real3D-AD start.sh (the papers do not state seeds).")
IMR_MAP = {
    "BTF(Raw) [21]": "btf_raw", "BTF(FPFH)": "btf_fpfh", "M3DM [39]": "m3dm",
    "PatchCore(FPFH) [35]": "patchcore_fpfh", "Patchcore(FPFH) [35]": "patchcore_fpfh",
    "PatchCore(PointMAE)": "patchcore_pointmae", "Patchcore(PointMAE)": "patchcore_pointmae",
    "CPMF [8]": None, "RegAD [25]": "reg3dad", "Ours": "imrnet",
}
BUILT = {"patchcore_fpfh", "patchcore_raw", "patchcore_fpfh_raw", "patchcore_pointmae",
         "patchcore_rgb", "btf_raw", "btf_fpfh", "btf_rgb", "btf_rgb_fpfh", "reg3dad", "pointad",
         "pointad_coop", "pointad_plus", "pointad_plus_coop", "clip_rendering", "imrnet"}


def built_methods(labels, mm):
    out = []
    for lab in labels:
        p = mm.get(lab)
        if p in BUILT and p not in out:
            out.append(p)
    return out


def imrnet() -> None:
    L = text("imrnet_anomaly_shapenet.txt")
    # Table 1: dataset comparison (space separated, multi-word cells parsed by hand)
    i0 = L.index("Datasets Year Type Modality #Class #Anomaly Types Number Point Range")
    raw = L[i0 + 1: i0 + 6]
    t1 = [
        ["MVTecAD-3D [2]", "2021", "Real", "RGB/D", "10", "3-5", "3604", "10K-30K"],
        ["Eyecandies [5]", "2022", "Syn", "RGB/D/N", "10", "3", "15500", "-"],
        ["MAD [45]", "2023", "Syn+Real", "RGB", "20", "3", "10133", "-"],
        ["Real3D-AD [25]", "2023", "Real", "Point Cloud", "12", "2", "1200", "35K-780K"],
        ["Anomaly-ShapeNet (Ours)", "2023", "Syn", "Point Cloud", "40", "6", "1600", "8K-30K"],
    ]
    for r, line in zip(t1, raw):
        assert " ".join(r).replace("K-", " K-") == line.strip(), (r, line)
    write_csv(I, "table1", ["method", "Year", "Type", "Modality", "#Class", "#Anomaly Types",
                            "Number", "Point Range"], t1)
    write_yaml(I, "table1.meta.yaml", meta(
        I, "table1", "Comparison between the proposed Anomaly-ShapeNet and existing mainstream "
        "3D anomaly detection datasets.", None, None, {}, 1, ["method"], {},
        {r[0]: None for r in t1},
        ("DESCRIPTIVE table (dataset statistics, no results). SHAPE: 5 rows x 7 columns. The row "
         "label (dataset name, printed column 'Datasets') is stored in 'method' to keep the common "
         "row-key name. Kerning artefacts of the extraction normalised: '10 K-30K' -> '10K-30K' "
         "(same for the other point ranges)."),
        metric=None, kind="descriptive",
        text_columns=["Type", "Modality", "#Anomaly Types", "Point Range"],
        source=f"{I_SRC} lines {i0 + 1}-{i0 + 7}"))

    # Table 2: Real3D-AD I-AUROC
    i2 = next(i for i, l in enumerate(L) if l.startswith("Method Airplane Car Candy"))
    hdr = L[i2].split()
    assert hdr == ["Method", "Airplane", "Car", "Candy", "Chicken", "Diamond", "Duck", "Fish",
                   "Gemstone", "Seahorse", "Shell", "Starfish", "Toffees", "Mean"], hdr
    t2 = [parse_row(L[i], 13) for i in range(i2 + 1, i2 + 9)]
    write_csv(I, "table2", ["method"] + hdr[1:], t2)
    cm2 = dict(zip(hdr[1:13], REAL3D))
    write_yaml(I, "table2.meta.yaml", meta(
        I, "table2", "I-AUROC score for anomaly detection of 12 categories of Real3D-AD . Bold "
        "numbers represent the current highest metrics.", "real3d", "one_class",
        {"I-AUROC": "image_auroc"}, 1, ["method"], cm2, {r[0]: IMR_MAP[r[0]] for r in t2},
        ("SHAPE: 8 rows x 13 columns (12 classes + Mean), fractions (scale 1). Row labels "
         "include the citation markers as printed. CAUTION when comparing: relative to Group3AD "
         "Table 1 and the Real3D-AD README (specs/methods.md 4.2), this table's 'BTF(Raw)' row "
         "holds the BTF(FPFH) numbers and vice versa (mean 0.635 = BTF_FPFH in the Real3D-AD "
         "README), and for every baseline row the Candy and Toffees values are swapped (e.g. "
         "RegAD Candy 0.685 / Toffees 0.827 vs Reg3D-AD candybar 0.827 / toffees 0.685 in "
         "Group3AD); the CPMF row differs entirely from Group3AD's. Transcribed as printed; "
         "category_map follows the printed headers. " + R3D_SETUP),
        metric="image_auroc", mean_column="Mean", source=f"{I_SRC} lines {i2 + 1}-{i2 + 9}"))
    write_yaml(I, "table2.yaml", {
        "name": "imrnet_table2", "methods": built_methods([r[0] for r in t2], IMR_MAP),
        "dataset": "real3d", "root": None, "protocol": "one_class", "categories": "all",
        "seeds": [42], "evaluation": ONE_CLASS_EVAL, "dataset_options": {},
        "notes": "IMRNet paper Sec. 5.2 (I-AUROC) / 5.1 (Real3D-AD). " + R3D_SETUP})

    # Table 3: Anomaly-ShapeNet, three blocks
    blocks = [i for i, l in enumerate(L) if l.startswith("Method cap0") or
              l.startswith("Method bottle3") or l.startswith("Method vase7")]
    assert len(blocks) == 3, blocks
    cols3: list[str] = []
    rows3: dict[str, list[str]] = {}
    order: list[str] = []
    for b in blocks:
        h = L[b].split()[1:]
        ncols = len(h)
        cols3 += h
        for i in range(b + 1, b + 9):
            r = parse_row(L[i], ncols)
            key = normalise_label(r[0])
            if key not in rows3:
                rows3[key] = [r[0]]
                order.append(key)
            else:
                assert normalise_label(rows3[key][0]) == key
            rows3[key] += r[1:]
    assert len(cols3) == 41 and cols3[-1] == "Mean", cols3
    t3 = [rows3[k] for k in order]
    for r in t3:
        assert len(r) == 42, r
    write_csv(I, "table3", ["method"] + cols3, t3)
    asn = {c: c for c in cols3[:-1]}
    asn["jar"] = "jar0"
    asn["phone"] = "microphone0"
    write_yaml(I, "table3.meta.yaml", meta(
        I, "table3", "I-AUROC score for anomaly detection of 40 categories of our Anomaly-ShapeNet "
        "dataset . Our method clearly outperforms other methods. Last line is the average result "
        "of 40 classes. The results can be regarded as the baseline of Anomaly-ShapeNet.",
        "anomaly_shapenet", "one_class", {"I-AUROC": "image_auroc"}, 1, ["method"], asn,
        {r[0]: IMR_MAP[r[0]] for r in t3},
        ("SHAPE: printed in three blocks of 14 + 14 + 12 classes (+ Mean in the last block), "
         "8 method rows each; merged here into 8 rows x 41 columns in printed column order. Row "
         "labels as printed in the first block (later blocks print the same labels). "
         + ASN_ORDER_NOTE + " PAPER ANOMALIES (transcribed as printed): the Patchcore(PointMAE) "
         "values of block 3 repeat its block-2 sequence shifted by two classes, and BTF(FPFH) "
         "block 3 repeats part of its block-1 sequence; BTF Raw/FPFH labels may be swapped as "
         "in Table 2 (specs/methods.md 4.2 notes the Benchmark.pdf swap). Training set = 4 "
         "normal templates per class (Sec. 5.1). The printed 'Ours' Mean 0.661 differs from "
         "the mean of its 40 printed cells (0.659); all other rows agree to 0.0005. "
         + R3D_SETUP),
        metric="image_auroc", mean_column="Mean",
        source=f"{I_SRC} lines {blocks[0] + 1}-{blocks[2] + 9}"))
    write_yaml(I, "table3.yaml", {
        "name": "imrnet_table3", "methods": built_methods([r[0] for r in t3], IMR_MAP),
        "dataset": "anomaly_shapenet", "root": None, "protocol": "one_class",
        "categories": "all", "seeds": [42], "evaluation": ONE_CLASS_EVAL, "dataset_options": {},
        "notes": ("IMRNet paper Sec. 5.1-5.2; baselines run with the Real3D-AD code settings. "
                  + R3D_SETUP)})

    # Table 4: sampling ablation
    i4 = L.index("I-AUC P-AUC")
    t4 = []
    for i in range(i4 + 1, i4 + 5):
        parts = L[i].replace("V oxel", "Voxel").split()
        assert len(parts) == 3, parts
        t4.append(["IMRNet", parts[0], parts[1], parts[2]])
    assert [r[1] for r in t4] == ["RS", "FPS", "Voxel", "GPS"]
    write_csv(I, "table4", ["method", "Sample", "I-AUC", "P-AUC"], t4)
    write_yaml(I, "table4.meta.yaml", meta(
        I, "table4", "Ablation study on the sample methods. The bold number represents the sample "
        "method corresponding to the highest index. RS represents random sampling and FPS "
        "represents farthest random sampling. Voxel denotes voxel down-sample and GPS is our "
        "geometry aware sampling.", "anomaly_shapenet", "one_class",
        {"I-AUC": "image_auroc", "P-AUC": "point_auroc"}, 1, ["method", "Sample"], {},
        {"IMRNet": "imrnet"},
        ("SHAPE: 4 rows x 2 value columns. 'method' is the implied ablated model (IMRNet); the "
         "printed row label is in 'Sample' (header printed '# Sample'). 'V oxel' in the "
         "extraction is a kerning artefact of 'Voxel'. Dataset not stated in the caption; "
         "inferred as Anomaly-ShapeNet because GPS (the default) gives I-AUC 0.66 / P-AUC 0.65 = "
         "the IMRNet Anomaly-ShapeNet means (Table 3 mean 0.661; Benchmark.pdf P-AUROC 0.650)."),
        metric=None, default_setting="GPS",
        column_map={"I-AUC": {"dataset": "anomaly_shapenet", "metric": "image_auroc"},
                    "P-AUC": {"dataset": "anomaly_shapenet", "metric": "point_auroc"}},
        source=f"{I_SRC} lines {i4}-{i4 + 5}"))
    write_yaml(I, "table4.yaml", {
        "name": "imrnet_table4",
        "methods": [{"name": "imrnet", "grid": {"sampler": ["random", "fps", "voxel", "gps"]},
                     "label": "imrnet"}],
        "dataset": "anomaly_shapenet", "root": None, "protocol": "one_class",
        "categories": "all", "seeds": [42], "evaluation": ONE_CLASS_EVAL, "dataset_options": {},
        "notes": ("One IMRNet variant per patch-centre sampler via grid over 'sampler' (RS = "
                  "random, FPS = fps, Voxel = voxel, GPS = gps; the presets imrnet_rs, "
                  "imrnet_fps, imrnet_voxel, imrnet are the same configurations). Labels: "
                  "'imrnet(sampler=S)'. IMRNet paper Sec. 5.5 'Effectiveness of geometry aware "
                  "sampling' (Anomaly-ShapeNet inferred, see the sidecar). " + R3D_SETUP)})


def normalise_label(s: str) -> str:
    return s.lower().replace(" ", "")


def parse_row(line: str, nvals: int) -> list[str]:
    toks = line.split()
    vals = toks[-nvals:]
    label = " ".join(toks[:-nvals])
    for v in vals:
        float(v)
    return [label] + vals


# --------------------------------------------------------------------------------------------
# Group3AD
# --------------------------------------------------------------------------------------------

G = "group3ad"
G_SRC = "../shared/papers/group3ad.txt"
G_MAP = {
    "BTF(Raw)": "btf_raw", "BTF(FPFH)": "btf_fpfh", "M3DM(PointBERT)": None,
    "M3DM(PointMAE)": "m3dm", "PatchCore(FPFH)": "patchcore_fpfh",
    "PatchCore(FPFH+Raw)": "patchcore_fpfh_raw", "PatchCore(PointMAE)": "patchcore_pointmae",
    "CPMF": None, "IMRNet": "imrnet", "Reg3D-AD": "reg3dad", "Group3AD(Ours)": "group3ad",
    "Group3AD": "group3ad", "PatchCore(PointMAE) with IUN&IAN": None,
    "Group3AD without IUN&IAN": None, "PatchCore(PointMAE) with AGCS": None,
    "Group3AD without AGCS": None,
}
G_SETUP = ("Group3AD Sec. 4.1.1 (Real3D-AD) and 4.1.2 (metrics 'identical to those detailed in "
           "Real3D-AD': object/point AUROC and AUPR/AP). " + R3D_SETUP)
G_METRIC = {"O-AUROC": "image_auroc", "O-AUPR": "image_ap", "P-AUROC": "point_auroc",
            "P-AUPR": "point_aupr"}


def group3ad() -> None:
    L = text("group3ad.txt")
    caps = {}
    for i, l in enumerate(L):
        m = re.match(r"#*\s*Table (\d): (.*)", l)
        if m:
            caps[int(m.group(1))] = i
    assert sorted(caps) == [1, 2, 3, 4, 5, 6], caps
    hdr12 = ["Airplane", "Car", "Candybar", "Chicken", "Diamond", "Duck", "Fish", "Gemstone",
             "Seahorse", "Shell", "Starfish", "Toffees", "Average"]
    cm = dict(zip(hdr12[:12], REAL3D))
    nrows = {1: 11, 2: 9, 3: 10, 4: 10}
    for t in (1, 2, 3, 4):
        ci = caps[t]
        cap = re.sub(r"^#*\s*Table \d:\s*", "", L[ci])
        cap = cap.replace("(<sup>†</sup>)", "(↑)").replace("(<sup>↑</sup>)", "(↑)")
        printed_metric = re.match(r"(\S+) score", cap).group(1)
        h = split_tabs(L[ci + 1])
        assert h == ["Method"] + hdr12, h
        rows = []
        i = ci + 2
        while i < len(L) and L[i].count("\t") == 13:
            c = split_tabs(L[i])
            rows.append(c)
            i += 1
        assert len(rows) == nrows[t], (t, len(rows))
        tname = f"table{t}"
        write_csv(G, tname, ["method"] + hdr12, rows)
        metric = G_METRIC[printed_metric]
        notes = (f"SHAPE: {len(rows)} rows x 13 columns (12 classes + Average), fractions "
                 "(scale 1). ")
        if t == 1:
            notes += ("Caption arrow extracted as '†' (printed ↑). BTF(Raw) mean 0.603 / BTF(FPFH) "
                      "0.635 agree with the Real3D-AD README (specs/methods.md 4.2) - the opposite "
                      "labelling of IMRNet Table 2. ")
        if t == 4:
            notes += ("Text (Sec. 4.2.1) calls this metric 'P-AURR'. Group3AD Seahorse printed "
                      "'0.24' (two decimals) - kept as printed. ")
        if t in (2, 3, 4):
            notes += "Row set differs from Table 1 (as printed). "
        write_yaml(G, f"{tname}.meta.yaml", meta(
            G, tname, cap, "real3d", "one_class", {printed_metric: metric}, 1, ["method"], cm,
            {r[0]: G_MAP[r[0]] for r in rows}, notes + G_SETUP, metric=metric,
            mean_column="Average", source=f"{G_SRC} lines {ci + 1}-{i}"))
        write_yaml(G, f"{tname}.yaml", {
            "name": f"group3ad_{tname}", "methods": built_methods([r[0] for r in rows], G_MAP),
            "dataset": "real3d", "root": None, "protocol": "one_class", "categories": "all",
            "seeds": [42], "evaluation": ONE_CLASS_EVAL, "dataset_options": {},
            "notes": G_SETUP})
    for t in (5, 6):
        ci = caps[t]
        cap = re.sub(r"^#*\s*Table \d:\s*", "", L[ci])
        h = split_tabs(L[ci + 1])
        assert h == ["Metric", "Method"] + hdr12, h
        rows = []
        cur = None
        i = ci + 2
        while i < len(L) and L[i].count("\t") == 14:
            c = split_tabs(L[i])
            if c[0]:
                cur = c[0]
            rows.append([c[1], cur] + c[2:])
            i += 1
        assert len(rows) == 8, len(rows)
        tname = f"table{t}"
        write_csv(G, tname, ["method", "metric"] + hdr12, rows)
        write_yaml(G, f"{tname}.meta.yaml", meta(
            G, tname, cap, "real3d", "one_class",
            {"O-AUROC (↑)": "image_auroc", "P-AUPR (↑)": "point_aupr"}, 1, ["method", "metric"],
            cm, {r[0]: G_MAP[r[0]] for r in rows},
            ("SHAPE: 2 metric blocks x 4 rows = 8 rows x 13 columns. The printed 'Metric' cell "
             "spans its block; it is repeated on every row here. Row keys: method, metric. "
             "Some cells are printed with two decimals (e.g. 0.53, 0.12) - kept as printed. "
             "Caption says 'INU & IAN' (table 5) while the rows say IUN&IAN. " + G_SETUP),
            metric=None, mean_column="Average", source=f"{G_SRC} lines {ci + 1}-{i}"))
        write_yaml(G, f"{tname}.yaml", {
            "name": f"group3ad_{tname}", "methods": built_methods([r[0] for r in rows], G_MAP),
            "dataset": "real3d", "root": None, "protocol": "one_class", "categories": "all",
            "seeds": [42], "evaluation": ONE_CLASS_EVAL, "dataset_options": {},
            "notes": "Regenerates the PatchCore(PointMAE) rows only. " + G_SETUP})




# --------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------

WHAT = {
    ("pointad_plus", "table1"): "ZS 3D one-vs-rest, dataset means (point only)",
    ("pointad_plus", "table2"): "ZS M3D one-vs-rest, dataset means (points + RGB)",
    ("pointad_plus", "table3"): "ZS 3D cross-dataset (MVTec3D-AD -> Eyecandies / Real3D-AD)",
    ("pointad_plus", "table4"): "ZS M3D cross-dataset (MVTec3D-AD -> Eyecandies)",
    ("pointad_plus", "table5"): "inference time / FPS / peak GPU memory + detection pairs",
    ("pointad_plus", "table6"): "module (loss) ablation, point and multimodal",
    ("pointad_plus", "table8"): "ablation: learnable prompt length",
    ("pointad_plus", "table9"): "ablation: test point density (FPS ratio)",
    ("pointad_plus", "table10"): "ablation: rendering lighting",
    ("3dzal", "main_table1"): "main Table 1 (from spec, figure): per-pair 3DzAL + row means",
    ("3dzal", "main_table2"): "main Table 2 (from spec, figure): per-pair 3DzAL + row means",
    ("3dzal", "table7"): "3DSR baseline per pair (train x test)",
    ("3dzal", "table8"): "BTF baseline per pair (train x test)",
    ("3dzal", "table9"): "BTF baseline per pair (train x test)",
    ("3dzal", "table10"): "3DSR baseline per pair (train x test)",
    ("3dzal", "table11"): "ablation: w/o L_rd, C_w, input perturbation",
    ("3dzal", "table12"): "ablation: w/o C_w, input perturbation",
    ("3dzal", "table13"): "ablation: w/o input perturbation",
    ("3dzal", "table14"): "ablation: only adding-point pseudo anomalies",
    ("3dzal", "table15"): "ablation: only removing-point pseudo anomalies",
    ("imrnet", "table1"): "dataset comparison (descriptive, no results)",
    ("imrnet", "table2"): "Real3D-AD per class",
    ("imrnet", "table3"): "Anomaly-ShapeNet per class (40 classes)",
    ("imrnet", "table4"): "ablation: sampling method (IMRNet)",
    ("group3ad", "table1"): "Real3D-AD per class",
    ("group3ad", "table2"): "Real3D-AD per class",
    ("group3ad", "table3"): "Real3D-AD per class",
    ("group3ad", "table4"): "Real3D-AD per class",
    ("group3ad", "table5"): "ablation: IUN & IAN (two metric blocks)",
    ("group3ad", "table6"): "ablation: AGCS (two metric blocks)",
}


def readme() -> None:
    intro = [
        "Numbers transcribed from the four papers in `../shared/papers` (and, for 3DzAL main "
        "Tables 1-2, from `../shared/specs/3dzal.md` section 8) by "
        "`scripts/transcribe_paper_tables.py` (kept as the "
        "record of how each file was derived; rerun it to regenerate this folder). One folder per "
        "paper; per table:",
        "",
        "- `<table>.csv` - the table as printed: row-key columns first (`method` = printed row "
        "label, plus e.g. `metric`, `train`, a setting column), then one column per printed "
        "column; cells are the printed strings (`-` kept, bold/colour dropped). An empty cell "
        "means the value is not available and is listed with its reason in the sidecar's "
        "`empty_cells`.",
        "- `<table>.meta.yaml` - caption, dataset (registry name or null), protocol, `metrics` "
        "(printed metric -> our metric name; a list when it depends on the dataset), `metric` "
        "(single-metric tables), `scale` (100 = printed in %, 1 = fractions), `row_keys`, "
        "`category_map` (printed column -> our category), optional `column_map` (printed column "
        "-> {dataset, metric, modality} for columns that are dataset means, e.g. all PointAD+ "
        "tables), `mean_column`, `row_category_keys` (row keys that hold a category, 3DzAL "
        "`train`), `method_map` (printed row -> our preset or null), `empty_cells` / "
        "`uncertain_cells` ({row: {key: value}, column, reason}), `source` (file relative to the "
        "repository root, and lines) and `notes` (shape, alignment decisions, paper errata).",
        "- `<table>.yaml` - run spec (benchmark/run/spec.py format) regenerating the rows of our "
        "presets; only for tables with at least one built preset. Its header comment cites the "
        "paper's setup.",
        "",
        "Label convention in specs that run a preset in both modalities (PointAD+ tables 6 and "
        "8): label `<preset>` = modality points, `<preset>+rgb` = points+rgb; "
        "`column_map.modality` says which one a column needs.",
        "",
    ]
    lines = ["# Paper reference tables", ""]
    for para in intro:
        indent = "  " if para.startswith("- ") else ""
        lines += textwrap.wrap(para, 95, subsequent_indent=indent) if para else [""]
    lines += [
        "| paper | table | what | metric | dataset | protocol | shape (rows x value cols) "
        "| run spec: presets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for paper in ("pointad_plus", "3dzal", "imrnet", "group3ad"):
        names = sorted((p.name[:-4] for p in (OUT / paper).glob("*.csv")),
                       key=lambda n: (not n.startswith("main"), int(re.sub(r"\D", "", n))))
        for t in names:
            m = yaml.safe_load((OUT / paper / f"{t}.meta.yaml").read_text(encoding="utf-8"))
            with open(OUT / paper / f"{t}.csv", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            nval = len(rows[0]) - len(m["row_keys"])
            if m.get("metric"):
                metric = m["metric"]
            else:
                ms = []
                for v in m["metrics"].values():
                    for x in (v if isinstance(v, list) else [v]):
                        if x not in ms:
                            ms.append(x)
                metric = ", ".join(ms) if ms else "-"
            ds = m["dataset"]
            if ds is None and m.get("column_map"):
                ds = ", ".join(dict.fromkeys(c["dataset"] for c in m["column_map"].values()))
            spec = OUT / paper / f"{t}.yaml"
            if spec.is_file():
                sd = yaml.safe_load(spec.read_text(encoding="utf-8"))
                pres = list(dict.fromkeys(
                    e if isinstance(e, str) else e["name"] for e in sd["methods"]))
                sp = "yes: " + ", ".join(pres)
            else:
                sp = "no"
            lines.append(f"| {paper} | {t} | {WHAT[(paper, t)]} | {metric} | {ds or '-'} | "
                         f"{m['protocol'] or '-'} | {len(rows) - 1} x {nval} | {sp} |")
    outro = [
        "",
        "Not transcribed: PointAD+ Table 7 (view-number ablation) is referenced in the text but "
        "absent from the text extraction.",
        "",
        "Known extraction/paper problems (details in each sidecar's notes): PointAD+ Table 1 lost "
        "columns in the text extraction (only 8 of the printed value columns survive; row "
        "alignment of the CLIP + R., Cheraghian and PointCLIP V2 rows inferred), Table 3 lost "
        "its Real3D-AD AP column, Table 4's Real3D-AD columns duplicate neighbouring values, "
        "Table 5's pairs for CLIP + Rendering and PointCLIP V2 are inconsistent with Tables "
        "1/2/6; IMRNet Table 2 swaps the BTF Raw/FPFH labels and the Candy/Toffees values of the "
        "baselines relative to Group3AD Table 1 and the Real3D-AD README; 3DzAL Tables 14-15 "
        "have an off-diagonal '-' in the potato row.",
        "",
        "Checked by `tests/test_paper_tables.py` (format, maps, run specs, spot cells, printed "
        "means against the cells, cross-table consistency, every row against the paper text).",
    ]
    for para in outro:
        lines += textwrap.wrap(para, 95) if para else [""]
    (OUT / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    pointad_plus()
    dzal()
    imrnet()
    group3ad()
    readme()
    print(f"wrote {len(list(OUT.glob('*/*.csv')))} tables under {OUT}")
