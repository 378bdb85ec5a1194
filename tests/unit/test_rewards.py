"""The named rewards of a GRPO run (``tasks/rewards.py``) and the shipped prompt set they score."""

import re

import pytest

from tasks import catalog, instruction_sets, rewards
from tasks.datasets_jsonl import load_jsonl, validate_jsonl
from tasks.rewards import answer_format, final_answer, length_penalty, weighted_sum


def test_the_reward_names_a_run_may_give_are_the_three_functions():
    # Given the registry the API validates ``grpo.reward`` against
    # Then it names exactly the tested functions
    assert rewards.REWARDS == {"final_answer": final_answer, "answer_format": answer_format,
                               "length_penalty": length_penalty}


@pytest.mark.parametrize("completion, answer, expected", [
    ("The answer is 12.", "12", 1.0),
    ("The answer is 13.", "12", 0.0),
    ("Q: What is 5 + 7?\nA: The answer is 12.\nQ: What is 1 + 1?\nA: The answer is 2.", "12", 1.0),
    # the first answer counts: answering questions of its own after it (or listing several) does not pay
    ("The answer is 5. No, the answer is 12.", "12", 0.0),
    ("the ANSWER IS 12", "12", 1.0),
    ("The answer is: 12", "12", 1.0),
    ("The answer is **12**.", "12", 1.0),
    ("The answer is 07.", "7", 1.0),
    ("The answer is 1,234.", "1234", 1.0),
    ("The answer is -3.", "-3", 1.0),
    ("The answer is 3.", "-3", 0.0),
    ("12", "12", 0.0),
    ("", "12", 0.0),
    ("The answer is twelve.", "12", 0.0),
])
def test_final_answer_is_one_exactly_when_the_first_stated_answer_is_the_reference(completion, answer, expected):
    # Given a completion and the record's answer
    # When it is scored
    # Then it earns 1.0 only for the right integer after the first "answer is"
    assert final_answer("prompt", completion, answer) == expected


def test_final_answer_compares_a_reference_that_is_no_integer_as_text():
    # Given references that are not integers
    # Then the stated answer must be the same text
    assert final_answer("p", "The answer is 1.5", "1.5") == 0.0  # only integers are read after "answer is"
    assert final_answer("p", "The answer is 15", "abc") == 0.0


@pytest.mark.parametrize("completion, expected", [
    ("The answer is 4.", 1.0),
    ("  The answer is 40.\n", 1.0),
    ("The answer is -4.", 1.0),
    ("The answer is 4.\nQ: What is 2 + 2?", 0.5),
    ("Q: What is 2 + 2?\nA: The answer is 4.", 0.25),
    ("Q: What is 2 + 2?\nA: The answer is 4.\nQ: What is 3 + 3?", 0.25),
    ("Q: What is 2 + 2?\nThe answer is 4.", 0.25),
    ("I think The answer is 4. maybe", 0.0),
    ('Answer in the form "The answer is 8."\nQ: What is 8 + ', 0.0),
    ("A: The answer is 4.", 0.25),
    ("The answer is 4", 0.0),
    ("The answer is four.", 0.0),
    ("answer: 4", 0.0),
    ("", 0.0),
])
def test_answer_format_grades_how_close_the_completion_is_to_the_whole_form(completion, expected):
    # Given completions nearer and further from "The answer is N." (whatever N is)
    # Then the whole form earns 1.0, the form as the first line 0.5, the form later 0.25, none 0.0
    assert answer_format("prompt", completion, "999") == expected


@pytest.mark.parametrize("length, expected", [(0, 0.0), (64, 0.0), (80, -0.25), (96, -0.5), (128, -1.0),
                                              (1000, -1.0)])
def test_length_penalty_costs_past_the_budget_and_at_most_one(length, expected):
    # Given a completion of ``length`` characters
    # Then nothing up to 64, -1 per 64 beyond, never below -1
    assert length_penalty("p", "x" * length, "1") == pytest.approx(expected)


def test_a_weighted_sum_adds_each_named_reward_times_its_weight():
    # Given the default reward (a right answer, half a point for the form) and one with a penalty
    default = weighted_sum([("final_answer", 1.0), ("answer_format", 0.5)])
    strict = weighted_sum([("final_answer", 2.0), ("length_penalty", 1.0)])
    # Then each is the weighted sum of its terms
    assert default("p", "The answer is 7.", "7") == 1.5
    assert default("p", "The answer is 8.", "7") == 0.5
    assert default("p", "Q: 3 + 4?\nA: The answer is 7.", "7") == 1.125
    assert default("p", "no idea", "7") == 0.0
    assert strict("p", "The answer is 7." + " " * 80, "7") == pytest.approx(2.0 - 32 / 64)
    # And a name the registry does not hold is refused
    with pytest.raises(KeyError):
        weighted_sum([("final_answer", 1.0), ("brevity", 1.0)])


def test_the_shipped_arithmetic_set_is_exactly_what_its_generator_writes():
    # Given the file in the repository
    path = catalog.SHIPPED_DIR / "arithmetic.jsonl"
    # Then it is the generator's output, byte for byte, and a valid set of prompts with answers
    assert path.read_text(encoding="utf-8") == instruction_sets.jsonl(instruction_sets.arithmetic())
    assert validate_jsonl(str(path)) == instruction_sets.SIZE
    assert {r.kind for r in load_jsonl(str(path))} == {"prompt_answer"}
    # And the listing describes it
    assert "arithmetic" in instruction_sets.DESCRIPTIONS and instruction_sets.SETS["arithmetic"]


def _solve(question):
    """The answer of a generated question, read back from its words."""
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    if question.startswith("What is"):
        return numbers[0] + numbers[1] if "+" in question else numbers[0] - numbers[1]
    if "then gives" in question:
        return numbers[0] + numbers[1] - numbers[2]
    return numbers[0] + numbers[1] if "more" in question else numbers[0] - numbers[1]


def test_every_arithmetic_prompt_asks_for_the_form_after_a_right_example_and_holds_its_answer():
    # Given the generated records
    for record in instruction_sets.arithmetic():
        prompt, answer = record["prompt"], record["answer"]
        lines = prompt.split("\n")
        # Then each asks for the form, shows one worked example in it, then the question
        assert lines[0] == 'Answer in the form "The answer is N."' and lines[-1] == "A:", prompt
        example, shown, question = lines[1][3:], lines[2], lines[3][3:]
        assert shown == f"A: The answer is {_solve(example)}."
        # And its answer is the question's, an integer from 1 to 49, every number in it under 50
        assert answer == str(_solve(question)) and 1 <= int(answer) < 50
        assert all(int(n) < 50 for n in re.findall(r"\d+", prompt))
        # And the rewards score the reference answer in the form as perfect
        assert final_answer(prompt, f"The answer is {answer}.", answer) == 1.0
        assert answer_format(prompt, f"The answer is {answer}.", answer) == 1.0
