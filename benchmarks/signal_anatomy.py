"""Which part of an RL update vanishes under a population of prompts, measured (issue 12).

    python benchmarks/signal_anatomy.py RUN_DIR [--population 0] [--weights base|final] [--problems 16]

Takes one RL batch as the slow phase would: `--problems` training problems, G rollouts each split over the run's
population after cycle `--population` (`population/cycle-N.json`; an rl run, or `--population seed`, uses the seed
prompt alone), sampled from the base or the run's final weights. Then, per member:

- rollouts, mean reward, within-member reward variance (unbiased, per problem, averaged);
- token entropy, the probability of the sampled token and the logit margin (top-1 minus top-2 log-probability) at
  every sampled position: how certain the policy is under that prompt;
- the norm of the gradient of that member's share of the CISPO loss (on-policy, ratio 1: -w A log pi(y), the
  paper's advantages over all G rollouts and per-problem token mean over kept problems);

and the whole loss's gradient split by problem: problems whose rewards vary within a member's rollouts, and problems
whose rewards vary only between members. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def gradient_norm(model, loss: torch.Tensor) -> float:
    model.zero_grad()
    if not loss.requires_grad:
        return 0.0
    loss.backward(retain_graph=True)
    return math.sqrt(sum(float(p.grad.float().pow(2).sum()) for p in model.parameters() if p.grad is not None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--population", default="0", help="cycle whose population to use, or 'seed'")
    parser.add_argument("--weights", choices=["base", "final"], default="base")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch  # after the arguments: --help answers at once
    import yaml

    from fastslow.config import parse_config
    from fastslow.fast.population import SEED_ID, Member, assign_prompts
    from fastslow.policy import Sampling, chat_messages, completion_distributions, generate, load_model, load_tokenizer
    from fastslow.slow.objective import group_advantages, reward_signal, row_weights
    from fastslow.tasks import load_task

    config = parse_config(yaml.safe_load((args.run_dir / "config.yaml").read_text()))
    task = load_task(config.task.name, **config.task.args)
    problems = task.problems("train", config.task.train_size, config.seed)[: args.problems]
    seed_prompt = config.task.seed_prompt or task.seed_prompt
    population_file = args.run_dir / "population" / f"cycle-{args.population}.json"
    if args.population == "seed" or not population_file.is_file():
        population = [Member(SEED_ID, seed_prompt)]
    else:
        population = [Member.from_json(m) for m in json.loads(population_file.read_text())["members"]]
    weights = config.model.path
    if args.weights == "final":
        latest = args.run_dir / "checkpoints" / (args.run_dir / "checkpoints" / "LATEST").read_text().strip()
        weights = str(latest / "model")
    device = "cuda" if torch.cuda.is_available() else None
    tokenizer, model = load_tokenizer(config.model.path), load_model(weights, "float32", device)
    G = config.loop.rollouts_per_problem
    slots = assign_prompts(population, G)
    sampling = Sampling(config.model.max_new_tokens, config.model.temperature, config.model.top_p)

    torch.manual_seed(args.seed)
    conversations = [chat_messages(m.text, p.prompt) for p in problems for m in slots]
    completions = generate(model, tokenizer, conversations, sampling)
    rewards = torch.tensor([task.score(p, completions[i * G + j]).reward for i, p in enumerate(problems)
                            for j in range(G)]).view(-1, G)
    advantages, kept = group_advantages(rewards, config.rl.advantage_eps, config.rl.drop_zero_variance)
    member_of_slot = torch.tensor([population.index(m) for m in slots])
    signal = reward_signal(rewards, member_of_slot)

    model.train()
    distributions = completion_distributions(model, tokenizer, conversations, completions)
    token_logps, entropy, margin = [], [], []
    for positions in distributions.chunks():  # the vocabulary-wide log-probs one chunk of positions at a time
        log_probs = distributions.log_probs(positions)
        token_logps.append(log_probs.gather(-1, distributions.tokens[:, positions, None]).squeeze(-1))
        with torch.no_grad():
            entropy.append(-(log_probs.exp() * log_probs).sum(-1))
            top2 = log_probs.topk(2, dim=-1).values
            margin.append(top2[..., 0] - top2[..., 1])
    # on the host (the gradient flows back to the GPU)
    token_logps, entropy, margin = (torch.cat(t, dim=1).cpu() for t in (token_logps, entropy, margin))
    mask = distributions.mask.cpu()
    weights_per_row = row_weights(kept, mask.sum(dim=1), int(kept.sum()))
    row_loss = -(advantages.flatten() * weights_per_row) * (token_logps * mask).sum(dim=1)  # [rows]
    p_sampled = token_logps.detach().exp()

    def mean_over(values: torch.Tensor, rows: torch.Tensor) -> float:
        m = mask[rows]
        return float((values[rows] * m).sum() / m.sum().clamp(min=1))

    rows_of = {m.id: torch.tensor([r for r in range(len(conversations)) if slots[r % G].id == m.id]) for m in population}
    table = ["| member | rollouts | mean reward | within-member reward variance | entropy (nats/token) | p(sampled "
             "token) | logit margin (nats) | grad norm of its loss share | text |", "|" + "---|" * 9]
    for member in population:
        rows = rows_of[member.id]
        member_rewards = rewards.flatten()[rows].view(len(problems), -1)
        variance = float(member_rewards.var(dim=1).mean()) if member_rewards.shape[1] > 1 else float("nan")
        grad = gradient_norm(model, row_loss[rows].sum())
        table.append(f"| {member.id} | {len(rows)} | {float(member_rewards.mean()):.3f} | {variance:.4f} | "
                     f"{mean_over(entropy, rows):.4f} | {mean_over(p_sampled, rows):.4f} | {mean_over(margin, rows):.2f} "
                     f"| {grad:.4g} | {member.text[:80]} |")

    within = torch.zeros(len(problems), dtype=torch.bool)
    for k in range(len(population)):
        columns = rewards[:, member_of_slot == k]
        if columns.shape[1] > 1:
            within |= columns.std(dim=1) > 0
    problem_of_row = torch.arange(len(conversations)) // G
    split = ["| problems | count | grad norm of their loss share |", "|---|---|---|"]
    for label, chosen in (("kept, varying within a member", kept & within), ("kept, varying only between members",
                                                                                kept & ~within), ("all kept", kept)):
        rows = chosen[problem_of_row]
        split.append(f"| {label} | {int(chosen.sum())} | {gradient_norm(model, row_loss[rows].sum()):.4g} |")
    print(f"## {args.run_dir.name}: weights {args.weights}, population {args.population}, {len(problems)} problems x "
          f"G={G}\n")
    print(f"kept problems {int(kept.sum())} of {len(problems)}; within-prompt signal {signal['within_prompt_signal']}; "
          f"within-member share of reward variance {signal['within_prompt_variance_share']}\n")
    print("\n".join(table) + "\n")
    print("\n".join(split) + "\n")


if __name__ == "__main__":
    main()
