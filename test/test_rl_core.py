"""DQN-TAMER core: environments, credit assignment, the simulated human's five factors, agents, checkpoints,
feedback checks, keyboard mapping. Plain pytest, no ROS."""
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from koba_ros.errors import KobaError
from koba_ros.rl.agents import AgentConfig, DQNTamerAgent, make_agent, with_overrides
from koba_ros.rl.credit import CreditAssigner
from koba_ros.rl.delay import Delay
from koba_ros.rl.envs import MAZE_ID, make_env, state_codes, tabular_model
from koba_ros.rl.human import HumanConfig, SimulatedHuman
from koba_ros.rl.keyboard import key_feedback, key_value
from koba_ros.rl.maze import MazeEnv
from koba_ros.rl.networks import StateMLP
from koba_ros.rl.q_learner import QConfig
from koba_ros.rl.session import FeedbackLimits, TrainingSession


# --- environments -----------------------------------------------------------------------------
def test_maze_passes_gymnasium_env_checker_and_is_registered():
    check_env(gym.make(MAZE_ID, render_mode="rgb_array").unwrapped, skip_render_check=False)
    env = gym.make(MAZE_ID, layout="corridor")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["distance"] == 6


def test_maze_walks_the_shortest_path_to_the_goal_and_renders():
    env = MazeEnv("corridor", render_mode="rgb_array")
    model = tabular_model(env)
    dist = model.steps_to_goal()
    state, _ = env.reset()
    steps, terminated = 0, False
    while not terminated:
        action = int(np.argmin([dist[s] if not ok else -1 for s, ok in zip(model.next_state[state],
                                                                            model.success[state], strict=True)]))
        state, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        assert not truncated
    assert steps == env.shortest_path == 6 and reward == env.goal_reward
    frame = env.render()
    assert frame.shape == (3 * 16, 5 * 16, 3) and frame.dtype == np.uint8


def test_maze_truncates_at_step_limit_and_bumps_into_walls():
    env = MazeEnv("corridor", max_steps=3)
    env.reset()
    obs, reward, terminated, truncated, _ = env.step(0)  # up from the top row: a bump
    assert obs == 0 and reward == env.step_penalty and not terminated
    env.step(0)
    assert env.step(0)[3] is True


def test_maze_takes_integer_actions_only():
    env = MazeEnv("corridor")
    env.reset()
    for good in (1, np.int64(1), np.array(1), np.uint8(1)):
        assert env.step(good)[0] == 1  # right, from the start at (0, 0)
        env.reset()
    for bad in (1.7, 1.0, "1", float("nan"), np.float64(1.0), np.array([1]), 4, -1, None):
        with pytest.raises(KobaError, match="maze action must be an integer 0..3"):
            env.step(bad)
    assert env.position == env.start and env.steps == 0  # refused actions change nothing


def test_unreachable_goal_and_bad_layouts_raise_koba_error():
    with pytest.raises(KobaError, match="unreachable"):
        MazeEnv(["S#.", "##.", "..G"])
    for layout in (["S..", "..X"], ["S.", "..G"], "nope", ["...", "..G"]):
        with pytest.raises(KobaError):
            MazeEnv(layout)


def test_taxi_model_matches_the_real_environment():
    env = make_env("taxi")
    model = tabular_model(env)
    assert model.next_state.shape == (500, 6)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = int(env.unwrapped.s)
        a = int(rng.integers(6))
        s2, r, term, trunc, _ = env.step(a)
        assert s2 == model.next_state[s, a] and term == model.success[s, a]
        if term or trunc:
            env.reset()
    assert model.steps_to_goal().max() > 5


def test_taxi_distance_is_the_sum_of_the_two_sub_goals():
    """The human's shortest-path judge on Taxi: steps to deliver = taxi->passenger + pick-up + passenger->destination
    + drop-off, so a step is good when it nears the current sub-goal or is the right pick-up/drop-off."""
    env = make_env("taxi")
    taxi, model = env.unwrapped, tabular_model(env)
    distance = model.steps_to_goal()
    locs = taxi.locs
    # Manhattan distance is not the maze distance in Taxi (walls): take it from the model with the passenger aboard.
    aboard = {(r, c, d): distance[taxi.encode(r, c, 4, d)] for r in range(5) for c in range(5) for d in range(4)}
    for s in range(500):
        r, c, p, d = taxi.decode(s)
        if p == d:  # passenger already at the destination: never a start state
            continue
        if p == 4:
            assert distance[s] == aboard[(r, c, d)]
        else:
            pr, pc = locs[p]
            to_passenger = aboard[(r, c, p)] - 1  # the trip to place p with the passenger aboard, minus its drop-off
            assert distance[s] == to_passenger + 1 + aboard[(pr, pc, d)]
    pickup, dropoff = 4, 5
    start = taxi.encode(*locs[0], 0, 2)
    assert distance[model.next_state[start, pickup]] == distance[start] - 1     # right pick-up: progress (good)
    assert model.next_state[start, dropoff] == start                            # illegal drop-off: no progress (bad)
    human = SimulatedHuman(HumanConfig(), distance)
    assert human.judge(start, model.next_state[start, pickup], False) == 1.0
    assert human.judge(start, model.next_state[start, dropoff], False) == -1.0


def test_factored_codes_share_rows_between_states_and_one_hot_does_not():
    taxi = make_env("taxi")
    codes = state_codes(taxi, "factored")
    assert codes.shape == (500, 4) and codes.max() == 18
    assert list(codes[taxi.unwrapped.encode(2, 3, 1, 0)]) == [2, 5 + 3, 10 + 1, 15 + 0]
    assert state_codes(taxi, "onehot").shape == (500, 1)
    maze = make_env("maze", layout="open5")
    r, c = maze.unwrapped.position_of(7)
    assert list(state_codes(maze, "factored")[7]) == [r, maze.unwrapped.rows + c]
    with pytest.raises(KobaError):
        state_codes(taxi, "pixels")


def test_factored_mlp_generalises_a_factor_to_unseen_states():
    """What H learns about one factor (action 0 is good in taxi columns 0-1, bad in 2-4) in some states carries over
    to states never trained on (passenger at place 3); the one-hot network has nothing to carry it."""
    taxi = make_env("taxi").unwrapped
    codes = state_codes(make_env("taxi"), "factored")
    seen = [taxi.encode(0, c, p, d) for c in range(5) for p in range(3) for d in range(4) if p != d]
    unseen = [taxi.encode(0, c, 3, d) for c in range(5) for d in range(3)]
    error = {}
    for name, net in (("factored", StateMLP(500, 2, 16, 1e-2, np.random.default_rng(0), codes=codes)),
                      ("onehot", StateMLP(500, 2, 16, 1e-2, np.random.default_rng(0)))):
        states = np.array(seen)
        target = np.where(np.array([taxi.decode(s)[1] for s in seen]) < 2, 1.0, -1.0)
        def squared(q, target=target):
            return float(((q - target) ** 2).mean()), 2 * (q - target) / len(q)
        for _ in range(300):
            net.fit(states, np.zeros(len(states), dtype=int), squared)
        wanted = np.where(np.array([taxi.decode(s)[1] for s in unseen]) < 2, 1.0, -1.0)
        error[name] = np.abs(net(np.array(unseen))[:, 0] - wanted).mean()
    assert error["factored"] < 0.3 and error["factored"] < 0.5 * error["onehot"]


# --- credit assignment ------------------------------------------------------------------------
def _credit(model, delay, dt=1.0, n=10):
    c = CreditAssigner(delay, model)
    for i in range(n):
        c.begin(i, 0, i * dt)
    return c


def test_interval_credit_is_deep_tamer_eq2_and_sums_to_one():
    c = _credit("interval", Delay("uniform", 0.2, 4.0), dt=0.5, n=20)
    credits = c.assign(10.0)
    # Steps shown within [10-4, 10-0.2]: 0.5 s of a 3.8 s window each, the newest partly.
    assert math.isclose(sum(x.weight for x in credits), 1.0, abs_tol=1e-9)
    assert credits[0].state == 12 and math.isclose(credits[0].weight, 0.5 / 3.8, rel_tol=1e-9)
    assert credits[-1].state == 19 and math.isclose(credits[-1].weight, 0.3 / 3.8, rel_tol=1e-9)


def test_onset_credit_goes_to_the_step_the_person_reacted_to():
    c = _credit("onset", Delay("uniform", 0.2, 1.0))
    credits = c.assign(5.6)  # step 5 appeared at 5.0: 0.6 s before; step 4 at 1.6 s, outside 0.2-1.0
    assert [(x.state, round(x.weight, 6)) for x in credits] == [(5, 1.0)]
    peaked = _credit("onset", Delay("gamma", 0.2, 4.0, 0.5)).assign(9.5)
    assert max(peaked, key=lambda x: x.weight).state == 9
    assert sum(x.weight for x in peaked) == pytest.approx(1.0, abs=0.01)  # tiny tail weights are dropped


def test_credit_outside_the_window_is_empty_and_delays_validate():
    c = _credit("onset", Delay("uniform", 0.2, 4.0))
    assert c.assign(100.0) == [] and c.assign(0.1) == []
    for bad in ("uniform:1:0.5", "poisson:0:1", "uniform", "gamma:0.2:4:9"):
        with pytest.raises(KobaError):
            Delay.parse(bad)
    d = Delay.parse("gamma:0.2:4.0:0.5")
    assert d.cdf(0.2) == 0.0 and d.cdf(4.0) == pytest.approx(1.0)
    samples = [d.sample(np.random.default_rng(i)) for i in range(200)]
    assert min(samples) >= 0.2 and max(samples) <= 4.0 and 0.4 < np.median(samples) < 1.0


def test_gamma_delay_with_no_mass_in_its_window_is_refused():
    # gamma peaked at 0.1 s has ~0 mass in [3, 4]: sampling looped forever and the credit weights were 0/0
    for text in ("gamma:3:4:0.1", "gamma:2:4:0.2"):
        with pytest.raises(KobaError, match=f"delay {text}: .* almost no mass"):
            Delay.parse(text)
        with pytest.raises(KobaError, match="almost no mass"):
            HumanConfig.parse(f"delay={text}")


def test_gamma_delay_samples_its_truncated_cdf_however_thin_the_window():
    d = Delay.parse("gamma:0.2:4.0:0.5")
    samples = np.array([d.sample(np.random.default_rng(i)) for i in range(4000)])
    for q in (0.3, 0.6, 1.2, 2.0):
        assert np.mean(samples <= q) == pytest.approx(float(d.cdf(q)), abs=0.03)
    thin = Delay.parse("gamma:2:4:0.3")  # about 3e-6 of the gamma lies in [2, 4]: rejection drew ~3e5 per sample
    rng, reference = np.random.default_rng(0), np.random.default_rng(0)
    with np.errstate(all="raise"):
        samples = np.array([thin.sample(rng) for _ in range(300)])
        density = thin.pdf(np.linspace(2.0, 4.0, 2001))
    reference.random(300)  # one uniform number per sample, however thin the window (rejection drew ~3e5 each)
    assert rng.random() == reference.random()
    assert samples.min() >= 2.0 and samples.max() <= 4.0 and np.median(samples) < 2.3  # piled up at lo
    assert np.isfinite(density).all() and density.mean() * 2.0 == pytest.approx(1.0, abs=0.02)


# --- simulated human: the five factors ---------------------------------------------------------
def _watch(config, n=2000, seed=0, layout="default"):
    """Let a human watch n random maze steps; returns (human, [(feedback, correct sign, shown_at)])."""
    env = MazeEnv(layout)
    model = tabular_model(env)
    dist = model.steps_to_goal()
    human = SimulatedHuman(config, dist, seed=seed, position_of=env.position_of, goal=env.goal)
    rng = np.random.default_rng(seed)
    free = np.flatnonzero(dist > 0)
    truth, out = {}, []
    for i in range(n):
        s, a = int(rng.choice(free)), int(rng.integers(4))
        s2 = int(model.next_state[s, a])
        truth[i] = 1.0 if (model.success[s, a] or dist[s2] < dist[s]) else -1.0
        human.watch(i, s, a, s2, bool(model.success[s, a]), shown_at=float(i))
    for fb in human.due(float(n + 10)):
        out.append((fb, truth[fb.step]))
    return human, out


def test_human_binary_and_natural_reaction_judge_progress_along_shortest_path():
    _, out = _watch(HumanConfig(p_feedback=1.0, p_wrong=0.0, half_life=0), n=300)
    assert len(out) == 300 and all(fb.value == sign for fb, sign in out)
    assert {fb.value for fb, _ in out} == {-1.0, 1.0}
    _, graded = _watch(HumanConfig(p_feedback=1.0, p_wrong=0.0, half_life=0, binary=False), n=300)
    assert len(graded) < 300  # wall bumps are neutral (0) and not reported when not forced to a sign


def test_human_straight_line_judge_differs_from_shortest_path_in_the_maze():
    env = MazeEnv()
    dist = tabular_model(env).steps_to_goal()
    naive = SimulatedHuman(HumanConfig(judge="straight_line"), dist, position_of=env.position_of, goal=env.goal)
    expert = SimulatedHuman(HumanConfig(), dist)
    # From (4,4) moving up to (3,4) is a wall; moving right to (4,5) heads into the dead end at (3,5).
    s, s2 = env.state_of((4, 4)), env.state_of((4, 5))
    assert naive.judge(s, s2, False) == 1.0 and expert.judge(s, s2, False) == -1.0
    with pytest.raises(KobaError):
        SimulatedHuman(HumanConfig(judge="straight_line"), dist)


def test_human_delay_stochasticity_and_wrong_sign():
    _, out = _watch(HumanConfig(p_feedback=0.5, p_wrong=0.2, half_life=0, delay="uniform:0.2:1.0"))
    delays = np.array([fb.stamp - fb.step for fb, _ in out])
    assert delays.min() >= 0.2 and delays.max() <= 1.0
    assert 0.44 < len(out) / 2000 < 0.56
    wrong = np.mean([fb.value != sign for fb, sign in out])
    assert 0.15 < wrong < 0.25
    assert _watch(HumanConfig(p_feedback=0.0), n=200)[1] == []


def test_human_unsustainability_makes_feedback_rarer():
    human, out = _watch(HumanConfig(p_feedback=1.0, half_life=200), n=1000)
    early = sum(fb.step < 200 for fb, _ in out)
    late = sum(fb.step >= 800 for fb, _ in out)
    assert early > 3 * late and human.p_feedback_now == pytest.approx(0.5 ** 5)


def test_human_config_parses_and_rejects():
    c = HumanConfig.parse("p_feedback=0.3,p_wrong=0.2,delay=gamma:0.2:2:0.5,binary=false")
    assert (c.p_feedback, c.p_wrong, c.binary) == (0.3, 0.2, False)
    for bad in ("p_feedback=2", "speed=3", "p_wrong=x", "judge=psychic"):
        with pytest.raises(KobaError):
            HumanConfig.parse(bad)


def test_due_returns_reactions_in_time_order():
    human = SimulatedHuman(HumanConfig(p_feedback=1.0, half_life=0, delay="uniform:0.2:1.0"), np.array([2, 1, 0]))
    human.watch(0, 0, 0, 1, False, shown_at=0.0)
    assert human.due(0.1) == []
    got = human.due(1.0)
    assert len(got) == 1 and 0.2 <= got[0].stamp <= 1.0 and got[0].value in (-1.0, 1.0)


def test_human_refuses_states_outside_the_maze():
    env = MazeEnv()
    human = SimulatedHuman(HumanConfig(p_feedback=1.0, half_life=0), tabular_model(env).steps_to_goal())
    for state, next_state in ((-1, 0), (0, -1), (100, 0), (0, 100)):  # numpy read -1 as cell 99
        with pytest.raises(KobaError, match="state must lie in 0..99"):
            human.watch(1, state, 0, next_state, False, 0.0)
    assert human.observed == 0 and human.pending == []
    human.watch(1, 0, 1, 1, False, 0.0)
    assert len(human.pending) == 1


# --- agents -----------------------------------------------------------------------------------
def test_mlp_fits_targets():
    net = StateMLP(10, 3, 16, 1e-2, np.random.default_rng(0))
    states, actions, target = np.arange(10), np.arange(10) % 3, np.linspace(-1, 1, 10)
    first = net.fit(states, actions, lambda q: (float(((q - target) ** 2).mean()), 2 * (q - target) / 10))
    for _ in range(500):
        last = net.fit(states, actions, lambda q: (float(((q - target) ** 2).mean()), 2 * (q - target) / 10))
    assert last < 0.01 * first


def test_alpha_h_decays_per_step_and_per_success():
    agent = DQNTamerAgent(4, 2, AgentConfig(alpha_h=1.0, alpha_h_decay=0.5, alpha_h_success_decay=0.1,
                                            q_agreement=0.0))
    for _ in range(3):
        agent.observe(0, 0, 0.0, 1, False, False)
    assert agent.alpha_h == pytest.approx(0.125)
    agent.end_episode(reached_goal=False)
    assert agent.alpha_h == pytest.approx(0.125)
    agent.end_episode(reached_goal=True)
    assert agent.alpha_h == pytest.approx(0.0125)


def test_alpha_h_hands_over_only_when_q_would_have_chosen_the_same_actions():
    """A successful episode lowers alpha_h only if argmax Q agreed with the actions taken (q_agreement)."""
    agent = DQNTamerAgent(4, 2, AgentConfig(alpha_h=1.0, alpha_h_success_decay=0.5, q_agreement=0.9,
                                            q=QConfig(learn_start=10**6)))  # Q frozen: no updates in this test
    agent.q.net.p["w2"][:] = 0.0
    agent.q.net.p["b2"][:] = [1.0, 0.0]   # Q prefers action 0 everywhere
    for action in (1, 1, 0, 1):           # the human steered it to the goal; Q agreed on 1 of 4 steps
        agent.observe(0, action, 0.0, 1, False, False)
    agent.end_episode(reached_goal=True)
    assert agent.alpha_h == 1.0
    for _ in range(10):                   # Q would have done the same on every step
        agent.observe(0, 0, 0.0, 1, False, False)
    agent.end_episode(reached_goal=True)
    assert agent.alpha_h == 0.5
    for _ in range(10):                   # agreed, but did not reach the goal
        agent.observe(0, 0, 0.0, 1, False, False)
    agent.end_episode(reached_goal=False)
    assert agent.alpha_h == 0.5


def test_dqn_tamer_follows_h_early_and_q_once_alpha_h_is_gone():
    agent = DQNTamerAgent(1, 2, AgentConfig(eps_start=0.0, eps_end=0.0, alpha_h=1.0))
    agent.q.net.p["b2"][:] = [0.0, 0.5]   # Q prefers action 1
    agent.h.net.p["b2"][:] = [2.0, 0.0]   # the human prefers action 0
    agent.q.net.p["w2"][:] = agent.h.net.p["w2"][:] = 0.0
    assert agent.act(0) == 0
    agent.alpha_h = 0.1
    assert agent.act(0) == 1


def _q_says_1_h_says_0(**config) -> DQNTamerAgent:
    """A DQN-TAMER agent whose Q prefers action 1 and whose H prefers action 0 in every state (frozen learners)."""
    agent = DQNTamerAgent(3, 3, AgentConfig(alpha_h=1.0, q=QConfig(learn_start=10**6), **config))
    agent.q.net.p["w2"][:] = agent.h.net.p["w2"][:] = 0.0
    agent.q.net.p["b2"][:] = [0.0, 0.5, 0.0]
    agent.h.net.p["b2"][:] = [2.0, -1.0, -1.0]
    return agent


def test_h_guided_exploration_draws_what_the_person_liked():
    counts = {}
    for temperature in (0.0, 0.2):
        agent = _q_says_1_h_says_0(eps_start=1.0, eps_end=1.0, explore_temperature=temperature)
        counts[temperature] = np.bincount([agent.act(0) for _ in range(600)], minlength=3)
    assert counts[0.0].min() > 150                        # uniform: every action about a third of the time
    assert counts[0.2][0] > 580 and counts[0.2][1] < 10   # softmax(H / 0.2): P(action 0) = 1 - 2e-7


def test_trust_in_h_falls_on_a_revisit_and_returns_next_episode():
    agent = _q_says_1_h_says_0(eps_start=0.0, eps_end=0.0, revisit_trust=0.1)
    assert agent.act(0) == 0                               # first visit: H's 2.0 outweighs Q's 0.5
    agent.observe(0, 0, -1.0, 0, False, False)             # ... and it bumped into a wall: still in state 0
    assert agent.act(0) == 1                               # revisit: alpha_h x 0.1, Q decides
    assert agent.act(2) == 0                               # other states keep the full alpha_h
    restored = _q_says_1_h_says_0(eps_start=0.0, eps_end=0.0, revisit_trust=0.1)
    restored.load_state_dict(agent.state_dict())           # the episode's visits are part of a checkpoint
    assert restored.act(0) == 1
    agent.end_episode(reached_goal=False)
    assert agent.act(0) == 0
    off = _q_says_1_h_says_0(eps_start=0.0, eps_end=0.0)   # revisit_trust 1 (default): no change
    off.observe(0, 0, -1.0, 0, False, False)
    assert off.act(0) == 0


def test_avoid_repeats_tries_another_action_in_a_revisited_state():
    agent = _q_says_1_h_says_0(eps_start=0.0, eps_end=0.0, avoid_repeats=True)
    chosen = []
    for _ in range(4):                                     # a wall: every action leaves the agent in state 0
        chosen.append(agent.act(0))
        agent.observe(0, chosen[-1], -1.0, 0, False, False)
    assert chosen == [0, 1, 2, 0]                          # best first, then the untried ones, then all allowed again
    agent.end_episode(reached_goal=False)
    assert agent.act(0) == 0


def test_tamer_learns_the_sign_of_feedback():
    agent = make_agent("tamer", 3, 2, seed=0)
    for _ in range(200):
        agent.feedback(1.0, [_c(1, 0)])
        agent.feedback(-1.0, [_c(1, 1)])
    h = agent.h.h(1)
    assert h[0] > 0.5 and h[1] < -0.5 and agent.act(1, explore=False) == 0


def _c(state, action, weight=1.0):
    from koba_ros.rl.credit import Credit
    return Credit(state, action, weight)


def test_unknown_agent_and_bad_state_raise():
    with pytest.raises(KobaError):
        make_agent("ppo", 3, 2)
    with pytest.raises(KobaError):
        make_agent("dqn", 3, 2).act(7)


def test_agent_settings_overrides_and_bad_ones():
    base = AgentConfig()
    config = with_overrides(base, ["alpha_h=10", "eps_decay_steps_with_human=5000", "q.lr=0.003", "h.train_every=10"])
    assert (config.alpha_h, config.eps_decay_steps_with_human, config.q.lr, config.h.train_every) == (10.0, 5000,
                                                                                                       0.003, 10)
    assert config.q.gamma == base.q.gamma and base.alpha_h == 1.0  # the rest, and the original, unchanged
    for bad in ("nope=1", "q.nope=1", "x.lr=1", "alpha_h=", "alpha_h=ten"):
        with pytest.raises(KobaError):
            with_overrides(base, [bad])


# --- training session: feedback checks ----------------------------------------------------------
def _session(agent="dqn_tamer"):
    env = MazeEnv("corridor")
    return TrainingSession(env, make_agent(agent, env.observation_space.n, 4), CreditAssigner(),
                           FeedbackLimits(max_rate_hz=20, burst=20))


def test_feedback_before_any_step_and_bad_values_are_rejected_and_change_nothing():
    s = _session()
    with pytest.raises(KobaError, match="no step yet"):
        s.feedback(1.0, 0.5, 1.0)
    for _ in range(3):
        s.step(float(s.total_steps))
    now = 3.0
    for value, stamp, conf, reason in ((math.nan, 2.6, 1.0, "bad value"), (math.inf, 2.6, 1.0, "bad value"),
                                       (1.0, now + 60.0, 1.0, "future stamp"), (1.0, now - 180.0, 1.0, "late stamp"),
                                       (1.0, math.nan, 1.0, "bad stamp"), (1.0, 2.6, 0.0, "bad confidence")):
        before = len(s.agent.h.memory)
        with pytest.raises(KobaError, match=reason):
            s.feedback(value, stamp, now, conf)
        assert len(s.agent.h.memory) == before
    assert s.feedback(1.0, 2.6, now) >= 1 and s.agent.feedback_count == 1
    s.step(now)  # the learner keeps running
    assert sum(s.rejected.values()) == 7


def test_a_burst_of_1000_feedback_per_second_is_throttled():
    s = _session()
    for i in range(5):
        s.step(float(i))
    accepted = 0
    for k in range(1000):
        try:
            s.feedback(1.0, 4.5, 5.0 + k / 1000)
            accepted += 1
        except KobaError as exc:
            assert "too fast" in str(exc)
    assert 20 <= accepted <= 41  # the burst, plus 20/s refill over one second
    assert s.rejected["too fast"] == 1000 - accepted


def test_episodes_are_recorded_and_dqn_ignores_feedback():
    s = _session("dqn")
    for i in range(400):
        s.step(float(i))
    assert s.episodes and all(e.steps <= s.env.max_steps for e in s.episodes)
    s.feedback(1.0, 399.6, 400.0)
    assert s.agent.feedback_count == 0


# --- keyboard -----------------------------------------------------------------------------------
def test_keyboard_mapping_and_stamp():
    assert key_value("+") == key_value("g") == 1.0 and key_value("-") == key_value("b") == -1.0
    assert key_value("x") is None and key_feedback(" ", 1.0) is None
    fb = key_feedback("y", 1234.5)
    assert (fb.value, fb.stamp, fb.key) == (1.0, 1234.5, "y")
