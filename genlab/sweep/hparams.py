"""TensorBoard's HParams view of a sweep, written with tensorboard's protobufs (torch-free): each
job's run holds its HParams session (its overrides, its end status) and final/<metric> scalars;
the sweep directory's own event file holds the HParams experiment (the union of every job's
overrides and metrics, so mixed sweeps of several families list all) and the summary's plot.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from genlab.sweep.records import is_numeric, keys_in_order, varying_keys


def _write_events(logdir: Path, summaries: list[tuple[int, object]]) -> None:
    """(step, Summary) pairs into a new event file in logdir (torch-free: tensorboard's writer)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(logdir))
    for step, summary in summaries:
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()


def _hparams_summary(tag: str, **data):
    """A Summary holding one HParams plugin record (experiment, session start or end)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    content = plugin_data_pb2.HParamsPluginData(**data)
    value = summary_pb2.Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content),
                                      tensor=metadata.NULL_TENSOR)
    return summary_pb2.Summary(value=[value])


def write_job_hparams(run_dir: Path, record: dict) -> None:
    """A finished job's HParams session (its overrides, its end status) and final/<metric>
    scalars, into its own run directory: no sub-run, unlike SummaryWriter.add_hparams."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time() - (record["wall_s"] or 0))
    for key, value in record["overrides"].items():
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value = value
        elif value is not None:
            start.hparams[key].string_value = value
    status = api_pb2.STATUS_SUCCESS if record["status"] == "ok" else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    step = record["steps"] or 0
    finals = [summary_pb2.Summary.Value(tag=f"final/{name}", simple_value=value)
              for name, value in record["metrics"].items() if value is not None]
    _write_events(run_dir, [(0, _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start)),
                            (step, summary_pb2.Summary(value=finals)),
                            (step, _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end))])


def _experiment_summary(records: list[dict], metric_names: list[str]):
    """The HParams experiment of a sweep: every job's override keys and every final metric."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata

    infos = []
    swept = varying_keys(records)  # `differs` makes TensorBoard show these columns first
    for key in keys_in_order(r["overrides"] for r in records):
        values = [r["overrides"][key] for r in records if r["overrides"].get(key) is not None]
        if values and all(isinstance(v, bool) for v in values):
            info = api_pb2.HParamInfo(name=key, type=api_pb2.DATA_TYPE_BOOL)
        elif values and all(is_numeric(v) for v in values):
            info = api_pb2.HParamInfo(name=key, type=api_pb2.DATA_TYPE_FLOAT64)
        else:
            domain = struct_pb2.ListValue(values=[struct_pb2.Value(string_value=str(v)) for v in dict.fromkeys(values)])
            info = api_pb2.HParamInfo(name=key, type=api_pb2.DATA_TYPE_STRING, domain_discrete=domain)
        info.differs = key in swept
        infos.append(info)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"final/{name}")) for name in metric_names]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    return _hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment)


def _image_summary(tag: str, png: bytes):
    from tensorboard.compat.proto import summary_pb2

    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=image)])


def write_sweep_events(root: Path, records: list[dict], metric_names: list[str], pngs: dict[str, bytes]) -> None:
    """The sweep directory's own event file, with each plot (name → PNG bytes) as image sweep/<name>;
    it replaces the one an earlier summary wrote."""
    earlier = list(root.glob("events.out.tfevents.*"))
    summaries = [(0, _experiment_summary(records, metric_names))]
    summaries += [(0, _image_summary(f"sweep/{name}", png)) for name, png in pngs.items()]
    _write_events(root, summaries)
    for path in earlier:
        path.unlink(missing_ok=True)
