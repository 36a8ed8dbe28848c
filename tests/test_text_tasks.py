"""The real-text tasks (fastslow.tasks.text): generators on their data, verifiers and feedback on hand-written replies."""

import pytest

from fastslow.errors import FastSlowError
from fastslow.tasks import Problem, load_task
from fastslow.tasks.text import SEED_PROMPT, last_letter, numbers_in, words


@pytest.mark.parametrize("name,args", [("arithmetic", {}), ("arithmetic", {"digits": 3, "ops": "-"}), ("compare", {}),
                                       ("letters", {"question": "first"}), ("letters", {"question": "last"}),
                                       ("letters", {"question": "count"}), ("sentiment", {}),
                                       ("sentiment", {"ask": False})])
def test_problems_are_deterministic_disjoint_and_answered_by_their_own_reference(name, args):
    task = load_task(name, **args)
    train, val = task.problems("train", 1536, seed=0), task.problems("val", 64, seed=0)
    assert train == task.problems("train", 1536, seed=0) and val != task.problems("val", 64, seed=1)
    assert not {p.prompt for p in train} & {p.prompt for p in val}
    assert len({p.prompt for p in train}) == 1536
    assert task.seed_prompt == SEED_PROMPT and task.instruction and task.instruction != SEED_PROMPT
    for problem in train[:50] + val:
        assert task.score(problem, problem.answer).reward == 1.0  # the bare reference answer is right
        assert task.score(problem, "").reward == 0.0


def test_generated_problems_say_what_they_ask():
    problem = load_task("arithmetic", digits=2, ops="-").problems("val", 1, seed=3)[0]
    a, b = numbers_in(problem.prompt)
    assert "-" in problem.prompt and 10 <= a <= 99 and 10 <= b <= 99 and problem.answer == str(a - b)
    problem = load_task("compare", digits=3).problems("val", 1, seed=3)[0]
    assert problem.answer == str(max(numbers_in(problem.prompt))) and problem.info["options"][0] != problem.info["options"][1]
    problem = load_task("letters", question="last").problems("val", 1, seed=3)[0]
    assert problem.info["word"] in words() and f'"{problem.info["word"]}"' in problem.prompt
    assert problem.answer == problem.info["word"][-1]
    problem = load_task("sentiment", ask=False).problems("val", 1, seed=3)[0]
    assert problem.prompt.startswith("Review: ") and problem.answer in ("positive", "negative")


def test_reading_numbers_and_letters_out_of_sentences():
    assert numbers_in("1,200 apples, 3.5 pears, -7 degrees and 52.") == [1200, -7, 52]
    assert numbers_in("x12 and 12b") == []  # part of a word, not a number
    assert last_letter('The first letter of "apple" is "a".') == "a"
    assert last_letter("The word garden starts with a G") == "g"
    assert last_letter("It's a word.") == "a" and last_letter("No single letters here.") is None


def arithmetic(prompt="What is 23 + 48?", answer="71"):
    return load_task("arithmetic"), Problem("p", prompt, answer)


@pytest.mark.parametrize("reply,reward,feedback", [
    ("71", 1.0, "Correct: 71."),
    ("23 + 48 = 71.", 1.0, "Correct"),
    ("The answer is 71", 1.0, "Correct"),
    ("71, because 23 + 48 = 71", 1.0, "Correct"),
    ("23 + 48 = 61", 0.0, "Expected 71; the reply's last number is 61"),
    ("The sum is 71. Adding 1 gives 72.", 0.0, "last number is 72"),
    ("I cannot do math.", 0.0, "Expected 71; the reply gives no number: \"I cannot do math.\""),
])
def test_arithmetic_reads_the_last_number(reply, reward, feedback):
    task, problem = arithmetic()
    verdict = task.score(problem, reply)
    assert verdict.reward == reward and feedback in verdict.feedback


@pytest.mark.parametrize("reply,reward,feedback", [
    ("52", 1.0, "Correct: 52."),
    ("The larger number is 52.", 1.0, "Correct"),
    ("52 is larger than 37.", 0.0, "it names 52 and 37: the answer must be 52 alone"),
    ("37", 0.0, "Expected 52; it names 37"),
    ("The first one.", 0.0, "it names none of 52 and 37"),
    ("520", 0.0, "it names none"),  # a number that contains the answer is not the answer
])
def test_compare_wants_the_larger_number_alone(reply, reward, feedback):
    task = load_task("compare")
    problem = Problem("p", "Which is larger, 52 or 37?", "52", {"options": ["52", "37"]})
    verdict = task.score(problem, reply)
    assert verdict.reward == reward and feedback in verdict.feedback, verdict


@pytest.mark.parametrize("question,reply,reward,feedback", [
    ("first", "g", 1.0, "Correct: g."),
    ("first", 'The first letter of "garden" is "g".', 1.0, "Correct"),
    ("first", "G", 1.0, "Correct"),
    ("first", "The word garden starts with the letter d.", 0.0, "Expected g; the reply's last single letter is d"),
    ("first", "garden", 0.0, "the reply gives no single letter"),
    ("last", "n", 1.0, "Correct"),
    ("count", "The word has 6 letters.", 1.0, "Correct: 6."),
    ("count", "g-a-r-d-e-n: 6", 1.0, "Correct"),
    ("count", "It has seven letters.", 0.0, "the reply gives no number"),
    ("count", "7", 0.0, "Expected 6; the reply's last number is 7"),
])
def test_letter_questions(question, reply, reward, feedback):
    task = load_task("letters", question=question)
    answer = {"first": "g", "last": "n", "count": "6"}[question]
    verdict = task.score(Problem("p", 'A question about "garden".', answer, {"word": "garden"}), reply)
    assert verdict.reward == reward and feedback in verdict.feedback, verdict


@pytest.mark.parametrize("reply,reward,feedback", [
    ("negative", 1.0, "Correct: negative."),
    ("Negative.", 1.0, "Correct"),
    ("The review is negative: the soup was cold.", 1.0, "Correct"),
    ("It is not positive, it is negative.", 0.0, "it names positive and negative: the answer must be negative alone"),
    ("Positive!", 0.0, "Expected negative; it names positive"),
    ("The customer did not enjoy it.", 0.0, "it names none of positive and negative"),
    ("nonnegative", 0.0, "it names none"),
])
def test_sentiment_wants_one_label(reply, reward, feedback):
    task = load_task("sentiment")
    verdict = task.score(Problem("p", "Is this review positive or negative?\nThe soup was awful.", "negative"), reply)
    assert verdict.reward == reward and feedback in verdict.feedback, verdict


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(FastSlowError, match="task.args.digits: expected 1 to 6, got 9"):
        load_task("arithmetic", digits=9)
    with pytest.raises(FastSlowError, match="task.args.ops"):
        load_task("arithmetic", ops="*")
    with pytest.raises(FastSlowError, match="task.args.question: expected one of"):
        load_task("letters", question="middle")
    with pytest.raises(FastSlowError, match="arithmetic/1/\\+- has fewer than 1536 distinct train problems"):
        load_task("arithmetic", digits=1).problems("train", 1536, seed=0)


def test_answer_of_is_what_the_verifier_reads():
    """fastslow probe's answer entropy compares these: two sentences with one answer are one answer."""
    assert load_task("arithmetic").answer_of("23 + 48 = 71.") == load_task("arithmetic").answer_of("It is 71") == "71"
    assert load_task("compare").answer_of("52 is larger than 37.") == "37 and 52"
    assert load_task("compare").answer_of("The larger one is 52.") == "52"
    assert load_task("letters", question="first").answer_of('It starts with "G".') == "g"
    assert load_task("letters", question="count").answer_of("It has 6 letters.") == "6"
    assert load_task("sentiment").answer_of("Positive, not negative.") == "positive and negative"
    assert load_task("sentiment").answer_of("I liked it.") == ""
