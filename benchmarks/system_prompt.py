"""Which default system prompt answers factual questions best? (evidence for the catalog default)

Run: .venv/bin/python benchmarks/system_prompt.py [--model smollm2-135m-instruct]
Greedy decoding; an answer counts as correct when it contains the expected word.
"""

from __future__ import annotations

import argparse

import slmkit

QUESTIONS = [
    ("What is the capital of France?", "paris"),
    ("What is the capital of Japan?", "tokyo"),
    ("What is the capital of Italy?", "rome"),
    ("What is the capital of Germany?", "berlin"),
    ("What is the largest planet in the solar system?", "jupiter"),
    ("What is the chemical symbol for gold?", "au"),
    ("How many days are there in a week?", "seven|7"),
    ("Who wrote Romeo and Juliet?", "shakespeare"),
    ("What is the boiling point of water in Celsius?", "100"),
    ("What gas do plants absorb from the air?", "carbon dioxide|co2"),
    ("What is the freezing point of water in Celsius?", "0"),
    ("Which ocean is the largest?", "pacific"),
    ("What is 2 + 2?", "4|four"),
    ("What color is the sky on a clear day?", "blue"),
    ("Which planet is known as the Red Planet?", "mars"),
    ("What language is spoken in Spain?", "spanish"),
    ("What is the capital of Spain?", "madrid"),
    ("What is the capital of the United Kingdom?", "london"),
    ("What is the capital of Canada?", "ottawa"),
    ("What is the capital of Egypt?", "cairo"),
    ("What is the capital of Russia?", "moscow"),
    ("How many legs does a spider have?", "eight|8"),
    ("How many continents are there?", "seven|7"),
    ("What is the closest star to Earth?", "sun"),
    ("Who painted the Mona Lisa?", "leonardo|da vinci"),
    ("What is the chemical formula of water?", "h2o|h₂o"),
    ("What is the tallest mountain in the world?", "everest"),
    ("What is the longest river in Africa?", "nile"),
    ("Which animal is known as the king of the jungle?", "lion"),
    ("What is the square root of 9?", "3|three"),
    ("How many hours are in a day?", "24|twenty-four"),
    ("What is the main language spoken in Brazil?", "portuguese"),
    ("Who was the first person to walk on the Moon?", "armstrong"),
    ("What is the hardest natural substance?", "diamond"),
    ("Which organ pumps blood through the body?", "heart"),
    ("What currency is used in Japan?", "yen"),
    ("How many minutes are in an hour?", "60|sixty"),
    ("What do bees make?", "honey"),
    ("What is the largest mammal?", "whale"),
    ("Which planet is closest to the Sun?", "mercury"),
]

CANDIDATES = {
    "template default (no system message)": "",
    "You are a helpful assistant.": "You are a helpful assistant.",
    "You are a helpful assistant. Answer briefly and accurately.": (
        "You are a helpful assistant. Answer briefly and accurately."
    ),
    "You are a helpful assistant. Answer in English.": (
        "You are a helpful assistant. Answer in English."
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=slmkit.DEFAULT_MODEL)
    args = ap.parse_args()
    model = slmkit.load(args.model, pull=True)
    print(f"model: {model.id}, {len(QUESTIONS)} questions, greedy")
    for label, system in CANDIDATES.items():
        correct = 0
        for q, expected in QUESTIONS:
            text = model.chat(q, system=system, temperature=0, max_tokens=48).text.lower()
            ok = any(e in text for e in expected.split("|"))
            correct += ok
        print(f"{correct:2d}/{len(QUESTIONS)}  {label}")


if __name__ == "__main__":
    main()
