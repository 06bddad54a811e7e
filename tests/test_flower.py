"""Flower integration: the wrapper taps updates without touching aggregation, survives auditor
failures, and a real 2-client, 2-round simulation leaks a batch-1 client's image."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from gradleak.fl.flower import AuditConfig, FlowerAuditor, LeakageAudit  # noqa: E402
from gradleak.fl.protocol import Protocol, client_update  # noqa: E402
from gradleak.models import ModelSpec, complete_spec, create_model  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """LeNet-sized attacks: one thread is as fast unloaded and far faster on a shared machine."""
    torch.set_num_threads(1)
    yield


def _reply(node: int, state: dict[str, torch.Tensor], *, n: int, **metrics) -> Message:
    meta = Metadata(run_id=1, message_id=f"m{node}", src_node_id=node, dst_node_id=0, reply_to_message_id="i",
                    group_id="1", created_at=0.0, ttl=60.0, message_type="train")
    content = RecordDict({"arrays": ArrayRecord.from_torch_state_dict(state),
                          "metrics": MetricRecord({"num-examples": n, **metrics})})
    return Message(content=content, metadata=meta)


@pytest.fixture
def federation():
    """Global LeNet on 8x8 digits and two clients' FedAvg replies (weights after one SGD step)."""
    from gradleak.data import load_dataset

    data = load_dataset("digits", data_root=None, image_size=None, grayscale=False)
    spec = complete_spec(ModelSpec(name="lenet", input_shape=data.input_shape, num_classes=data.num_classes))
    torch.manual_seed(0)
    model = create_model(spec)
    global_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    protocol = Protocol(name="fedavg", lr=0.1)
    replies, truths = [], {}
    for node, idx in ((11, [3]), (22, [8])):
        x, y = data.inputs[idx], data.labels[idx]
        update = client_update(model, inputs=x, labels=y, protocol=protocol)
        replies.append(_reply(node, {k: global_state[k] + update[k] for k in global_state}, n=1))
        truths[node] = (x, y)
    return spec, global_state, protocol, replies, truths


def _aggregate(strategy, global_state, replies):
    """One round through the wrapper; the inner configure_train (which needs a live run) is stubbed."""
    strategy.strategy.configure_train = lambda *_args: []
    strategy.configure_train(1, ArrayRecord.from_torch_state_dict(global_state), ConfigRecord(), None)
    return strategy.aggregate_train(1, replies)


def test_wrapper_leaves_aggregation_untouched_and_attacks(tmp_path, federation):
    from gradleak.observation import GroundTruth

    spec, global_state, protocol, replies, truths = federation
    plain, _ = FedAvg(min_available_nodes=2, min_train_nodes=2).aggregate_train(1, copy.deepcopy(replies))
    auditor = FlowerAuditor(AuditConfig(
        model=spec, out=tmp_path, protocol=protocol, attack="idlg", attack_options={"iterations": 20},
        max_clients=None, truth_fn=lambda r, node, m: GroundTruth(*truths[node])))
    wrapped = LeakageAudit(FedAvg(min_available_nodes=2, min_train_nodes=2), auditor=auditor)
    audited, _ = _aggregate(wrapped, global_state, replies)
    for a, b in zip(plain.to_numpy_ndarrays(), audited.to_numpy_ndarrays()):
        np.testing.assert_array_equal(a, b)  # bit-identical aggregate
    records = [json.loads(line) for line in (tmp_path / "leakage.jsonl").read_text().splitlines()]
    assert [r["node_id"] for r in records] == [11, 22] and all(r["status"] == "ok" for r in records)
    assert max(r["metrics"]["psnr"] for r in records) > 20  # undefended batch-1 clients leak
    assert (tmp_path / "round_001" / "client_11" / "reconstruction.png").is_file()


def test_auditor_failure_never_stops_training(tmp_path, federation):
    spec, global_state, protocol, replies, _ = federation
    plain, _ = FedAvg(min_available_nodes=2, min_train_nodes=2).aggregate_train(1, copy.deepcopy(replies))

    class Exploding(FlowerAuditor):
        def audit_round(self, *args, **kwargs):
            raise RuntimeError("auditor bug")

    exploding = Exploding(AuditConfig(model=spec, out=tmp_path / "x", protocol=protocol))
    arrays, _ = _aggregate(LeakageAudit(FedAvg(min_available_nodes=2, min_train_nodes=2), auditor=exploding),
                           global_state, replies)
    for a, b in zip(plain.to_numpy_ndarrays(), arrays.to_numpy_ndarrays()):
        np.testing.assert_array_equal(a, b)  # training went on, unchanged

    bad_reply = _reply(33, {"conv.0.weight": torch.zeros(1)}, n=1)  # arrays that fit no LeNet
    auditor = FlowerAuditor(AuditConfig(model=spec, out=tmp_path / "b", protocol=protocol, max_clients=1))
    _aggregate(LeakageAudit(FedAvg(min_available_nodes=1, min_train_nodes=1), auditor=auditor), global_state,
               [bad_reply])
    (record,) = [json.loads(line) for line in (tmp_path / "b" / "leakage.jsonl").read_text().splitlines()]
    assert record["status"] == "error" and "lack" in record["error"]


def test_legacy_api_wrapper_audits_fit_results_and_forwards_them(tmp_path, federation):
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.server.strategy import FedAvg as LegacyFedAvg

    from gradleak.fl.flower_legacy import LegacyLeakageAudit
    from gradleak.observation import GroundTruth

    spec, global_state, protocol, replies, truths = federation
    names = list(global_state)

    class Proxy:
        def __init__(self, cid):
            self.cid = cid

    results = []
    for reply in replies:
        state = reply.content["arrays"].to_torch_state_dict()
        params = ndarrays_to_parameters([state[k].numpy() for k in names])
        results.append((Proxy(str(reply.metadata.src_node_id)), FitRes(Status(Code.OK, ""), params, 1, {})))
    auditor = FlowerAuditor(AuditConfig(
        model=spec, out=tmp_path, protocol=protocol, attack="idlg", attack_options={"iterations": 20},
        max_clients=None, node_ids=(22,), truth_fn=lambda r, node, m: GroundTruth(*truths[node])))
    wrapped = LegacyLeakageAudit(LegacyFedAvg(), auditor=auditor)
    start = ndarrays_to_parameters([global_state[k].numpy() for k in names])

    class Manager:  # what configure_fit needs from a client manager: no clients, no sampling
        def num_available(self):
            return 0

        def sample(self, num_clients, min_num_clients=None, criterion=None):
            return []

    wrapped.configure_fit(1, start, Manager())
    audited, _ = wrapped.aggregate_fit(1, results, [])
    plain, _ = LegacyFedAvg().aggregate_fit(1, results, [])
    from flwr.common import parameters_to_ndarrays

    for a, b in zip(parameters_to_ndarrays(plain), parameters_to_ndarrays(audited)):
        np.testing.assert_array_equal(a, b)
    (record,) = [json.loads(line) for line in (tmp_path / "leakage.jsonl").read_text().splitlines()]
    assert record["node_id"] == 22 and record["status"] == "ok" and record["metrics"]["psnr"] > 20  # node filter
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "round" in html


def test_real_flower_simulation_leaks_undefended_batch1_client(tmp_path):
    """Flower's own simulation engine (Ray backend): 2 SuperNodes, 2 rounds of FedAvg on histology."""
    pytest.importorskip("ray")
    from gradleak.fl.flower_demo import DemoConfig, run_demo

    records = run_demo(DemoConfig(out=str(tmp_path), num_clients=2, num_rounds=2, batch_size=1,
                                  attack="idlg", attack_options={"iterations": 40}, audit_clients=None))
    assert sorted(r["round"] for r in records) == [1, 1, 2, 2]  # two real rounds, both clients audited
    assert len({r["node_id"] for r in records}) == 2
    ok = [r for r in records if r["status"] == "ok"]
    best = max(r["metrics"]["psnr"] for r in ok)
    assert best > 20, records
    assert (tmp_path / "report.html").is_file() and (tmp_path / "federation.json").is_file()
