"""An SNN artifact as a torch module that steps through T timesteps, for backpropagation through
time with a surrogate gradient (hybrid conversion: the converted network is the starting point
of spike-based training; Rathi et al., ICLR 2020).

The forward pass is the artifact's, operator for operator (neuron.py):

    v = membrane + x;  fired = [v - theta >= 0];  spikes = theta * fired
    membrane_next = v - spikes   (reset by subtraction)  |  v - v * fired   (reset to zero)

with the membranes starting where the artifact starts them (``membrane_init`` after potential
correction, else ``v_init * theta``), bias corrections added to the input current, spiking
max-pools over the accumulated input, and the head decoded as its mean over the T steps. The
step ``fired = H(v - theta)`` has no useful derivative; the backward pass uses a triangle around
the threshold instead (Esser et al. 2016; Bellec et al. 2018), as wide as the threshold:

    d fired / d v  ~  max(0, 1 - |v - theta| / theta) / theta

so that ``d spikes / d v`` peaks at 1, like a ReLU's slope. Trainable: weights and biases,
thresholds (per layer or per channel), the initial membranes of a potential correction and the
currents of a bias correction."""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
import torch

from ..artifact import SNNModel
from ..errors import ModelError
from ..graph import reached_from
from ..neuron import OP_TYPE
from ..neurons import OP_TYPES as NEURON_OP_TYPES
from .quantize import QuantSpec
from .view import GraphModule, weight_slots

THRESHOLD_FLOOR = 1e-4  # thresholds are kept above this fraction of their starting value


class _Fire(torch.autograd.Function):
    """fired = [d >= 0] forward; a triangle of half-width theta (height 1/theta) backward."""

    @staticmethod
    def forward(ctx, over: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(over, theta)
        return (over >= 0).to(over.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        over, theta = ctx.saved_tensors
        width = theta.abs().clamp_min(1e-12)
        return grad * torch.clamp(1.0 - over.abs() / width, min=0.0) / width, None


def fire(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """[v >= theta] as 0/1 floats, with the surrogate gradient with respect to v and theta."""
    return _Fire.apply(v - theta, theta.detach())


def if_step(x, membrane, theta, reset_to_zero: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the artifact's IF neuron in torch: (spikes, membrane_next)."""
    v = membrane + x
    fired = fire(v, theta)
    spikes = fired * theta
    return spikes, (v - v * fired) if reset_to_zero else (v - spikes)


class SpikingModule(torch.nn.Module):
    """``snn`` as a module: ``forward(x, timesteps)`` is the decoded output after T steps (the
    mean of the head; the artifact's trailing Softmax is left to the loss), ``per_step=True``
    gives the running mean after every step ``[T, N, ...]``. ``quantize``: weight name ->
    QuantSpec (weights stored as integers keep their own bits). ``to_snn()`` writes the trained
    values back into a copy of the artifact."""

    def __init__(self, snn: SNNModel, quantize: dict[str, QuantSpec] | None = None):
        super().__init__()
        snn.require_neurons("training")
        others = sorted({n.op_type for n in snn.proto.graph.node if n.op_type in NEURON_OP_TYPES})
        if others:
            raise ModelError(
                f"{snn.source or 'the artifact'}: its neurons are {', '.join(others)}; the torch view trains IF "
                "neurons (one spike a step) only"
            )
        self.snn = snn
        self.layers = snn.layers
        self.timesteps = snn.timesteps
        self.encoding = snn.encoding
        self.head = snn.outputs[0]
        self.neuron_params = [layer["threshold"] for layer in self.layers]
        self.neuron_params += [layer["membrane_init"] for layer in self.layers if layer.get("membrane_init")]
        self.neuron_params += [layer["current_shift"] for layer in self.layers if layer.get("current_shift")]
        self.weight_names = list(weight_slots(gs.import_onnx(snn.proto)))
        self.view = GraphModule(
            snn.proto, self.weight_names + self.neuron_params, quantize, handlers={OP_TYPE: self._neuron}
        )
        self.states = snn.states()
        shapes = {v.name: v.type.tensor_type.shape.dim for v in snn.proto.graph.input}
        self.state_shapes = [
            [d.dim_value if d.HasField("dim_value") else None for d in shapes[s.input]] for s in self.states
        ]
        varying = [s.input for s in self.states] + ([snn.input_name] if self.encoding == "poisson" else [])
        reached = reached_from(self.view.graph, varying)
        self.static_nodes = [n for n in self.view.nodes if not any(t.name in reached for t in n.outputs)]
        self.step_nodes = [n for n in self.view.nodes if any(t.name in reached for t in n.outputs)]
        self.threshold_floor = {
            name: float(np.abs(self.view.parameter(name).detach().numpy()).min()) * THRESHOLD_FLOOR
            for name in (layer["threshold"] for layer in self.layers)
        }
        self.threshold_cap = {layer["threshold"]: layer["clip_max"] for layer in self.layers if layer.get("clip_max")}

    @staticmethod
    def _neuron(node: gs.Node, inputs) -> list[torch.Tensor]:
        x, membrane, theta = inputs
        return list(if_step(x, membrane, theta, bool(node.attrs.get("reset_to_zero", 0))))

    def parameter_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """(weights and biases, neuron parameters): weight decay applies to the first only."""
        neuron = set(self.neuron_params)
        weights = [self.view.parameter(n) for n in self.view.param_index if n not in neuron]
        return weights, [self.view.parameter(n) for n in self.neuron_params if n in self.view.param_index]

    def initial_states(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        values = {}
        by_membrane = {layer["membrane"]: layer for layer in self.layers}
        for state, shape in zip(self.states, self.state_shapes):
            dims = [n if d is None else d for d in shape]
            layer = by_membrane.get(state.input)
            if layer is None:  # a pool's state starts at zero
                values[state.input] = torch.zeros(dims, device=device)
            elif layer.get("membrane_init"):
                values[state.input] = self.view.constant(layer["membrane_init"]).expand(dims)
            else:
                theta = self.view.constant(layer["threshold"])
                values[state.input] = (np.float32(self.snn.v_init) * theta).expand(dims)
        return values

    def forward(
        self,
        x: torch.Tensor,
        timesteps: int | None = None,
        per_step: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        steps = int(timesteps or self.timesteps)
        name = self.snn.input_name
        poisson = self.encoding == "poisson"
        static = self.view.run({} if poisson else {name: x}, self.static_nodes)
        states = self.initial_states(len(x), x.device)
        total, means = None, []
        for t in range(steps):
            values = dict(static)
            values.update(states)
            if poisson:  # P(spike) = input intensity, fresh every step
                values[name] = (torch.rand(x.shape, generator=generator, device=x.device) < x).to(x.dtype)
            values = self.view.run(values, self.step_nodes)
            out = values[self.head]
            total = out if total is None else total + out
            if per_step:
                means.append(total / (t + 1))
            states = {s.input: values[s.output] for s in self.states}
        return torch.stack(means) if per_step else total / steps

    @torch.no_grad()
    def constrain(self) -> None:
        """Keep every threshold positive (and under its Clip bound): the artifact's neuron
        fires at v >= theta with spikes of amplitude theta, which needs theta > 0."""
        for name, floor in self.threshold_floor.items():
            theta = self.view.parameter(name)
            theta.clamp_(min=floor, max=self.threshold_cap.get(name))

    def to_snn(self, metadata: dict | None = None) -> SNNModel:
        """A copy of the artifact with the trained values (and ``metadata`` merged into its own)."""
        model = SNNModel(self.view.to_onnx(), source=self.snn.source)
        model.metadata.update(metadata or {})
        model.commit_metadata()
        return model
