"""OpenAIHTTPPolicy against a stub OpenAI-compatible server on 127.0.0.1 (no network)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest
from openai_stub import Stub, completion  # noqa: E402  (tests/ is on sys.path)

import reasonenv  # noqa: F401
from reasonenv.agents.http_policy import OpenAIHTTPError, OpenAIHTTPPolicy
from reasonenv.problems import Problem
from reasonenv.rollout import run_episodes


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def policy(stub: Stub, **kw: Any) -> OpenAIHTTPPolicy:
    kw = {"temperature": 0.7, "max_step_tokens": 32, "backoff": 0.01, "timeout": 5, **kw}
    return OpenAIHTTPPolicy(stub.url, "stub-model", api_key="sk-test", **kw)


def test_request_body_and_steps_accumulate(stub):
    stub.replies = [
        completion("2 + 3 = 5.\n\n", ids=[11, 12, 13], lps=[-0.1, -0.2, -0.3], stop_reason="\n\n"),
        completion("The answer is \\boxed{5}.", ids=[14, 15, 2], stop_reason=None),
    ]
    pol = policy(stub)
    pol.reset([0])
    a1 = pol.act(["Q: 2 + 3?\n"], [0])[0]
    a2 = pol.act(["(ignored)"], [0])[0]
    assert a1 == {"text": "2 + 3 = 5.\n\n", "token_ids": [11, 12, 13],
                  "logprobs": [-0.1, -0.2, -0.3], "eos": False}
    assert a2["text"] == "The answer is \\boxed{5}." and a2["eos"] is True
    assert a2["token_ids"] == [14, 15, 2] and a2["logprobs"] == [-0.5] * 3
    r1, r2 = stub.requests
    assert stub.paths == ["/v1/completions"] * 2
    assert r1["prompt"] == "Q: 2 + 3?\n" and r2["prompt"] == "Q: 2 + 3?\n2 + 3 = 5.\n\n"
    for r in (r1, r2):
        assert r["model"] == "stub-model" and r["stop"] == ["\n\n"] and r["max_tokens"] == 32
        assert r["temperature"] == 0.7 and r["top_p"] == 1.0 and r["logprobs"] == 1
        assert r["include_stop_str_in_output"] is True and r["return_tokens_as_token_ids"] is True
    assert stub.headers[0]["Authorization"] == "Bearer sk-test"
    assert pol.response(0) == "2 + 3 = 5.\n\nThe answer is \\boxed{5}."
    assert "sk-test" not in repr(pol)


def test_stripped_stop_string_is_reappended_and_eos_detected(stub):
    stub.replies = [
        completion("First step."),  # a server that strips the stop string and says nothing
        completion("Second step.", stop_reason="\n\n"),  # vLLM: stop string matched, stripped
        completion("Last.", stop_reason=None),  # vLLM: EOS
        completion(""),  # no text, finish "stop", nothing said: EOS
        completion("cut at max_tokens", finish="length"),
        completion("llama.cpp eos", stop_type="eos"),
    ]
    pol = policy(stub, logprobs=False, vllm_extras=False)
    pol.reset([0])
    got = [pol.act(["P"], [0])[0] for _ in range(6)]
    assert [(a["text"], a["eos"]) for a in got] == [
        ("First step.\n\n", False), ("Second step.\n\n", False), ("Last.", True), ("", True),
        ("cut at max_tokens", False), ("llama.cpp eos", True)]
    assert all(a["token_ids"] is None and a["logprobs"] is None for a in got)
    assert stub.requests[1]["prompt"] == "PFirst step.\n\n"
    assert "logprobs" not in stub.requests[0] and "include_stop_str_in_output" not in stub.requests[0]


def test_text_tokens_give_a_text_only_action_and_fixed_split(stub):
    stub.replies = [{"choices": [{"text": "abc", "finish_reason": "length",
                                  "logprobs": {"tokens": ["a", "bc"], "token_logprobs": [-1, -2]}}]},
                    completion("xyz", finish="stop")]
    pol = policy(stub, split="fixed:4")
    pol.reset([0])
    a = pol.act(["P"], [0])[0]
    assert a == {"text": "abc", "token_ids": None, "logprobs": None, "eos": False}
    assert "stop" not in stub.requests[0] and stub.requests[0]["max_tokens"] == 4
    assert pol.act(["P"], [0])[0]["eos"] is True  # no stop string sent: "stop" means EOS


def test_batched_act_sends_concurrent_requests_per_slot(stub):
    def respond(body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"]
        n = prompt.count("|")
        return completion(f"{prompt[:2]} step {n}|\n\n", ids=[n], stop_reason="\n\n")

    stub.responder = respond
    pol = policy(stub, max_concurrency=2)
    slots = [3, 1, 7]
    prompts = ["A:", "B:", "C:"]
    pol.reset(slots)
    for k in range(3):
        acts = pol.act(prompts, slots)
        assert [a["text"] for a in acts] == [f"{p} step {k}|\n\n" for p in prompts]
    assert len(stub.requests) == 9
    assert pol.response(7) == "".join(f"C: step {k}|\n\n" for k in range(3))
    pol.reset([7])
    assert pol.response(7) == ""


def test_retry_after_a_500(stub):
    stub.replies = [(500, b"overloaded"), completion("ok.\n\n")]
    pol = policy(stub, max_retries=2)
    pol.reset([0])
    assert pol.act(["P"], [0])[0]["text"] == "ok.\n\n"
    assert len(stub.requests) == 2 and pol.requests_sent == 2


def test_permanent_500_raises_a_clear_error(stub):
    stub.replies = [(500, b'{"error": "model crashed"}')] * 3
    pol = policy(stub, max_retries=2)
    pol.reset([0])
    with pytest.raises(OpenAIHTTPError, match=r"HTTP 500 after 3 attempt") as e:
        pol.act(["P"], [0])
    assert e.value.status == 500 and "model crashed" in str(e.value)
    assert e.value.url == f"{stub.url}/completions" and stub.url in str(e.value)
    assert len(stub.requests) == 3


def test_client_error_is_not_retried(stub):
    stub.replies = [(400, b'{"error": "bad request"}'), completion("never")]
    pol = policy(stub, max_retries=2)
    pol.reset([0])
    with pytest.raises(OpenAIHTTPError, match="HTTP 400") as e:
        pol.act(["P"], [0])
    assert e.value.status == 400 and len(stub.requests) == 1


def test_malformed_json_raises_a_clear_error(stub):
    stub.replies = [(200, b"{not json"), (200, b'{"choices": []}')]
    pol = policy(stub)
    pol.reset([0])
    with pytest.raises(OpenAIHTTPError, match="malformed JSON.*not json"):
        pol.act(["P"], [0])
    with pytest.raises(OpenAIHTTPError, match="no choices"):
        pol.act(["P"], [0])


def test_huge_response_body_is_capped(stub):
    stub.replies = [(200, b'{"choices": [{"text": "' + b"x" * 5000 + b'"}]}')]
    pol = policy(stub, max_response_bytes=1000)
    pol.reset([0])
    with pytest.raises(OpenAIHTTPError, match="max_response_bytes=1000"):
        pol.act(["P"], [0])


def test_unreachable_server_names_the_url():
    s = Stub()
    url = s.url
    s.close()  # nothing listens on that port any more
    pol = OpenAIHTTPPolicy(url, "m", max_retries=1, backoff=0.01, timeout=2)
    pol.reset([0])
    with pytest.raises(OpenAIHTTPError, match=f"POST {url}/completions failed after 2 attempt"):
        pol.act(["P"], [0])


def test_chat_mode_request(stub):
    stub.replies = [
        {"choices": [{"message": {"role": "assistant", "content": "Step one."},
                      "finish_reason": "stop", "stop_reason": "\n\n",
                      "logprobs": {"content": [{"token": "token_id:5", "logprob": -0.25}]}}]},
        {"choices": [{"message": {"content": "\\boxed{5}"}, "finish_reason": "stop",
                      "stop_reason": None}]},
    ]
    pol = policy(stub, chat=True)
    pol.reset([0])
    a1 = pol.act(["What is 2 + 3?"], [0])[0]
    a2 = pol.act(["What is 2 + 3?"], [0])[0]
    assert a1 == {"text": "Step one.\n\n", "token_ids": [5], "logprobs": [-0.25], "eos": False}
    assert a2["eos"] is True and a2["token_ids"] is None
    r1, r2 = stub.requests
    assert stub.paths == ["/v1/chat/completions"] * 2
    assert r1["messages"] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert "continue_final_message" not in r1 and r1["logprobs"] is True
    assert r2["messages"][-1] == {"role": "assistant", "content": "Step one.\n\n"}
    assert r2["continue_final_message"] is True and r2["add_generation_prompt"] is False


def test_bad_base_url_is_rejected():
    with pytest.raises(ValueError, match="http"):
        OpenAIHTTPPolicy("file:///etc/passwd", "m")


def test_drives_a_math_steps_episode_to_a_correct_answer(stub):
    stub.replies = [
        completion("2 + 3 = 5.", ids=[40, 41, 42], lps=[-0.1, -0.1, -0.1]),  # stop stripped
        completion("The answer is \\boxed{5}.", ids=[43, 44, 0], stop_reason=None),
    ]
    env = gym.make("reasonenv/MathSteps-v0")
    problem = Problem(id="t/0", question="What is 2 + 3?", answer="5", source="test")
    (ep,) = run_episodes(env, policy(stub), 1, problems=[problem])
    assert ep.steps == ["2 + 3 = 5.\n\n", "The answer is \\boxed{5}."]
    assert ep.outcome == 1.0 and ep.rewards[-1] == 1.0 and ep.terminated
    assert "What is 2 + 3?" in stub.requests[0]["prompt"]
    assert stub.requests[1]["prompt"] == stub.requests[0]["prompt"] + "2 + 3 = 5.\n\n"
