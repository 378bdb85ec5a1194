"""The shipped instruction sets, generated here (so they ship under the
project's licence, Apache-2.0): ``python -m tasks.instruction_sets`` writes
``tasks/data/json-person.jsonl`` and ``json-person-prefs.jsonl`` again,
byte for byte (tests check it).

``json-person``: a sentence about a person (many phrasings) and the order to
extract their name, age and city as JSON; the completion is exactly
``{"name": "...", "age": N, "city": "..."}``.  Gemma 3 270M, a base model,
answers such prompts with prose or loose JSON; the set's check
(``tasks/checks.json_person``) counts how often an answer has the shape.
Names, jobs and cities are drawn from small lists with a fixed seed; none is
about a real person.

``json-person-prefs``: the same prompts as ``json-person`` (record for
record, so the same every-10th pairs are held out), as DPO preference pairs:
``chosen`` is the exact JSON object (``json_person`` scores it correct),
``rejected`` a plausible answer that the check fails: prose, JSON with a
wrong key, an extra key or the age as a string, JSON after a preamble, or
well-formed JSON with a wrong city or age (right shape, wrong facts).

``arithmetic``: ``{prompt, answer}`` records for GRPO: a small word problem
or sum (one or two additions or subtractions, every number under 50), after
one worked example (a bare sum or difference) in the asked form ``The answer is N.``; the
answer is the integer.  Measured on Gemma 3 270M (the packaged base model)
in its chat turns: greedy, it echoes a question and answers it
(``Q: ...\nA: The answer is N.``), right on 2 of the 40 held-out prompts;
the rewards ``final_answer`` and ``answer_format`` (``tasks/rewards.py``)
score it, and 24 GRPO steps double that (``tests/training/test_grpo_program.py``).
"""

import json
import pathlib
import random

FIRST = ["Maria", "James", "Aiko", "Omar", "Lena", "Carlos", "Priya", "Tom", "Fatima", "Ivan", "Chloe", "Kwame",
         "Sofia", "Liam", "Mei", "Noah", "Zara", "Ethan", "Amara", "Lucas", "Hana", "Mateo", "Nina", "Yusuf",
         "Elena", "Arjun", "Grace", "Diego", "Leila", "Oscar"]
LAST = ["Lopez", "Smith", "Tanaka", "Haddad", "Fischer", "Silva", "Sharma", "Brown", "Khan", "Petrov", "Martin",
        "Mensah", "Rossi", "Walsh", "Chen", "Cohen", "Ali", "Novak", "Okafor", "Dubois", "Kim", "Garcia", "Berg",
        "Yilmaz", "Ivanova", "Patel", "Moreau", "Santos", "Nasser", "Larsen"]
CITIES = ["Madrid", "Toronto", "Osaka", "Cairo", "Berlin", "Lima", "Mumbai", "Leeds", "Lahore", "Kazan", "Lyon",
          "Accra", "Turin", "Dublin", "Shanghai", "Haifa", "Nairobi", "Prague", "Lagos", "Marseille", "Busan",
          "Seville", "Oslo", "Izmir", "Riga", "Pune", "Nantes", "Recife", "Amman", "Bergen"]
JOBS = ["engineer", "nurse", "teacher", "chef", "pilot", "baker", "architect", "lawyer", "painter", "farmer",
        "librarian", "dentist", "plumber", "journalist", "pharmacist", "carpenter", "accountant", "photographer"]
SENTENCES = [
    "{name} is a {age}-year-old {job} from {city}.",
    "Meet {name}: {age} years old, works as a {job}, lives in {city}.",
    "{city} is home to {name}, a {job} aged {age}.",
    "At {age}, {name} works as a {job} in {city}.",
    "{name} ({age}) moved to {city} last year to work as a {job}.",
    "Our new {job}, {name}, is {age} and based in {city}.",
    "Born {age} years ago, {name} now lives in {city} and is a {job}.",
    "The {job} {name}, who is {age}, grew up in {city}.",
]
ORDERS = [
    "Extract the person's name, age and city from the text as JSON.",
    "Return a JSON object with the name, age and city of the person in this text.",
    "Read the text and answer in JSON with the keys name, age and city.",
]
#: Examples in the set (every 10th is held out for evaluation).
SIZE = 400
SEED = 20261206


def _people(size, seed):
    """``(prompt, name, age, city, job)`` of each record, from ``seed``."""
    rng = random.Random(seed)
    for _ in range(size):
        name, age = f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.randint(19, 79)
        city, job = rng.choice(CITIES), rng.choice(JOBS)
        text = rng.choice(SENTENCES).format(name=name, age=age, city=city, job=job)
        yield f"{rng.choice(ORDERS)}\nText: {text}", name, age, city, job


def json_person(size=SIZE, seed=SEED):
    return [{"prompt": prompt, "completion": json.dumps({"name": name, "age": age, "city": city})}
            for prompt, name, age, city, _ in _people(size, seed)]


#: The seed of the rejected answers' choices (the prompts are ``json_person``'s).
PREFS_SEED = 20261207


def _rejected(rng, name, age, city, job):
    """A plausible answer that ``tasks.checks.json_person`` does not score correct."""
    kind = rng.randrange(8)
    if kind == 0:  # prose, as a base model answers
        return rng.choice([f"Name: {name}, age {age}, from {city}", f"{name} is {age} and lives in {city}.",
                           f"The person is {name}, {age} years old, from {city}."])
    if kind == 1:  # a wrong key
        key = rng.choice([("full_name", "age", "city"), ("name", "years", "city"), ("name", "age", "location")])
        return json.dumps(dict(zip(key, (name, age, city))))
    if kind == 2:  # the age as a string
        return json.dumps({"name": name, "age": str(age), "city": city})
    if kind == 3:  # a key the order did not ask for
        return json.dumps({"name": name, "age": age, "city": city, "job": job})
    if kind == 4:  # the JSON after a preamble
        return rng.choice(["Sure! ", "Here is the JSON: ", "JSON: "]) + \
            json.dumps({"name": name, "age": age, "city": city})
    if kind == 5:  # a key left out
        return json.dumps({"name": name, "city": city})
    if kind == 6:  # the right shape, a wrong city
        return json.dumps({"name": name, "age": age, "city": rng.choice([c for c in CITIES if c != city])})
    # the right shape, a wrong age
    return json.dumps({"name": name, "age": age + rng.choice([-10, -1, 1, 10]), "city": city})


def json_person_prefs(size=SIZE, seed=SEED, prefs_seed=PREFS_SEED):
    rng = random.Random(prefs_seed)
    return [{"prompt": prompt, "chosen": json.dumps({"name": name, "age": age, "city": city}),
             "rejected": _rejected(rng, name, age, city, job)}
            for prompt, name, age, city, job in _people(size, seed)]


#: ``arithmetic``: what the word problems count, and the seed of the set.
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells", "stamps", "cookies",
         "balloons", "cups"]
ARITHMETIC_SEED = 20261208
#: The form every answer is asked in (``tasks/rewards.py``'s ``answer_format`` checks it).
ANSWER_FORM = "The answer is N."


def _sum_problem(rng, bare=False):
    """``(question, answer)``: one or two additions or subtractions, every
    number under 50 and every result above zero; ``bare``: a sum or a
    difference, no words."""
    name, item = rng.choice(FIRST), rng.choice(ITEMS)
    kind = rng.randrange(2 if bare else 5)
    if kind == 0:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return f"What is {a} + {b}?", a + b
    if kind == 1:
        a = rng.randint(2, 19)
        b = rng.randint(1, a - 1)
        return f"What is {a} - {b}?", a - b
    if kind == 2:
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b
    if kind == 3:
        a = rng.randint(2, 30)
        b = rng.randint(1, a - 1)
        return f"{name} has {a} {item} and gives {b} away. How many {item} does {name} have left?", a - b
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    c = rng.randint(1, a + b - 1)
    return (f"{name} has {a} {item}, gets {b} more, then gives {c} to a friend. "
            f"How many {item} does {name} have left?"), a + b - c


def arithmetic(size=SIZE, seed=ARITHMETIC_SEED):
    """``{prompt, answer}`` records: a problem, after one worked example (a
    bare sum or difference, short: every prompt's tokens are padded to the
    longest's) in the asked form (a base model continues a pattern far more
    often than it follows an order), the answer an integer as a string."""
    rng = random.Random(seed)
    records = []
    for _ in range(size):
        example, example_answer = _sum_problem(rng, bare=True)
        question, answer = _sum_problem(rng)
        prompt = (f"Answer in the form \"{ANSWER_FORM}\"\nQ: {example}\nA: The answer is {example_answer}.\n"
                  f"Q: {question}\nA:")
        records.append({"prompt": prompt, "answer": str(answer)})
    return records


def jsonl(records):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


SETS = {"json-person": json_person, "json-person-prefs": json_person_prefs, "arithmetic": arithmetic}
#: What the dataset listing says of each set.
DESCRIPTIONS = {"json-person": ("Instruction set (400 pairs, generated by the project, Apache-2.0): extract a "
                                "person's name, age and city from a sentence as one JSON object. Scored by "
                                "the json_person check (format rate of held-out answers)."),
                "json-person-prefs": ("Preference set for DPO/ORPO (400 pairs, generated by the project, "
                                      "Apache-2.0): json-person's prompts; chosen is the exact JSON object, "
                                      "rejected a plausible answer the json_person check fails (prose, a "
                                      "wrong or extra key, the age as a string, a wrong city or age)."),
                "arithmetic": ("Prompt set for GRPO (400 prompts with answers, generated by the project, "
                               "Apache-2.0): small word problems and sums (one or two additions or "
                               "subtractions, numbers under 50), each after one worked example, the answer "
                               "asked as \"The answer is N.\" (rewards final_answer and answer_format).")}


def main():
    folder = pathlib.Path(__file__).parent / "data"
    for key, make in SETS.items():
        (folder / f"{key}.jsonl").write_text(jsonl(make()), encoding="utf-8")


if __name__ == "__main__":
    main()
