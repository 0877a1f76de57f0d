"""Look inside one DQN-TAMER benchmark run (the diagnosis in docs/dqn_tamer.md): every `--every` episodes, in all
states from which the goal can be reached, the share where the agent's greedy action is a shortest-path action
(`right`), the share where it leaves the state unchanged (`noop`: a wall bump or an illegal pick-up, a trap for a
greedy agent), and how far argmax Q agrees with the agent along its own greedy path from the maze start. Prints one
JSON object per checkpoint, then one with the run's summary (and how often a random walk finds the goal).

    .venv/bin/python bench/dqn_tamer_probe.py --env taxi --agent tamer --human p_feedback=1,p_wrong=0,half_life=0
    .venv/bin/python bench/dqn_tamer_probe.py --env taxi --agent dqn_tamer --set eps_decay_steps_with_human=5000
"""
import argparse
import json

import numpy as np

from koba_ros.rl.agents import ENV_AGENT_CONFIG, with_overrides
from koba_ros.rl.bench import BenchConfig, build_run, simulate
from koba_ros.rl.envs import tabular_model
from koba_ros.rl.human import HumanConfig


def greedy_path_agreement(agent, model, start: int, limit: int = 300) -> tuple[int, int]:
    """(steps where argmax Q = the agent's greedy action, steps) along the agent's greedy path from start."""
    s, agree, steps = start, 0, 0
    while steps < limit:
        a = int(np.argmax(agent.scores(s)))
        agree += int(np.argmax(agent.q.q(s)) == a)
        steps += 1
        if model.success[s, a]:
            break
        s = model.next_state[s, a]
    return agree, steps


def random_walk_success(env, model, walks: int = 2000, seed: int = 0) -> float:
    """Share of uniformly random episodes (from the environment's own start states) that reach the goal within its
    step limit: how often exploration alone finds the reward."""
    rng = np.random.default_rng(seed)
    limit = env.spec.max_episode_steps or env.unwrapped.max_steps
    hits = 0
    for i in range(walks):
        s, _ = env.reset(seed=seed + i)
        for _ in range(limit):
            a = rng.integers(model.next_state.shape[1])
            if model.success[s, a]:
                hits += 1
                break
            s = model.next_state[s, a]
    return hits / walks


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="taxi", choices=("maze", "taxi"))
    p.add_argument("--agent", default="tamer", choices=("dqn", "tamer", "dqn_tamer"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--episodes", type=int, default=150)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--human", default="", help="k=v,... (human.HumanConfig.parse); default: the default human")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="AgentConfig overrides")
    args = p.parse_args()
    config = BenchConfig(env=args.env, human=HumanConfig.parse(args.human),
                         agent=with_overrides(ENV_AGENT_CONFIG[args.env], args.set))
    env, agent, session, human = build_run(config, args.agent, args.seed)
    model = tabular_model(env)
    distance = model.steps_to_goal()
    good = model.success | (distance[model.next_state] == distance[:, None] - 1)
    reachable = np.flatnonzero(distance > 0)
    now = 0.0
    for stop in range(args.every, args.episodes + 1, args.every):
        now = simulate(session, human, stop, config.step_seconds, now)
        greedy = np.array([np.argmax(agent.scores(s)) for s in reachable])
        recent = session.episodes[-args.every:]
        row = {"episode": stop, "total_steps": session.total_steps, "feedback": agent.feedback_count,
               "right": round(float(good[reachable, greedy].mean()), 3),
               "noop": round(float((model.next_state[reachable, greedy] == reachable).mean()), 3),
               "mean_return": round(float(np.mean([e.ret for e in recent])), 2),
               "success": round(float(np.mean([e.reached_goal for e in recent])), 2),
               "epsilon": round(agent.epsilon, 3), "alpha_h": getattr(agent, "alpha_h", None)}
        if args.env == "maze" and hasattr(agent, "q"):
            row["q_agrees_on_greedy_path"] = "{}/{}".format(*greedy_path_agreement(
                agent, model, env.unwrapped.state_of(env.unwrapped.start)))
        print(json.dumps(row), flush=True)
    print(json.dumps({"env": args.env, "agent": args.agent, "seed": args.seed, "human": args.human or "default",
                      "set": args.set, "episodes": args.episodes,
                      "random_walk_success": random_walk_success(config.make_env(), model)}))


if __name__ == "__main__":
    main()
