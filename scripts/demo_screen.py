"""What a demo student has on screen: a Tk window with exam content that changes now and then.

Run on its own Xvfb display by scripts/demo.py; each student gets different content (`essay`, `code`, `chat`).
"""

from __future__ import annotations

import sys
import tkinter as tk

TEXTS = {
    "essay": [
        "Question 1. Explain the central limit theorem in your own words.",
        "The sample mean of many independent draws is approximately normal,",
        "whatever the shape of the population, as long as its variance is finite.",
        "Question 2. Give a 95 % confidence interval for the mean of the data.",
    ],
    "code": [
        "def mean(values):",
        "    return sum(values) / len(values)",
        "",
        "def variance(values):",
        "    m = mean(values)",
        "    return sum((v - m) ** 2 for v in values) / (len(values) - 1)",
    ],
    "chat": [
        "Exam portal - Statistics 1",
        "Question 3: which test compares the means of two independent samples?",
        "(this student's agent also tries chat.example.com through the proxy)",
    ],
}


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "essay"
    lines = TEXTS.get(kind, TEXTS["essay"])
    root = tk.Tk()
    root.title(f"Exam portal - {kind}")
    root.geometry("1024x640+0+0")
    text = tk.Text(root, font=("DejaVu Sans", 16), wrap="word")
    text.pack(fill="both", expand=True)
    state = {"line": 0}

    def type_next() -> None:
        # A new line every 12 s: the agent sends a changed screen, then "unchanged" records in between.
        if state["line"] < len(lines):
            text.insert("end", lines[state["line"]] + "\n")
        else:
            text.insert("end", f"Answer draft {state['line'] - len(lines) + 1}: ...\n")
        state["line"] += 1
        root.after(12_000, type_next)

    type_next()
    root.mainloop()


if __name__ == "__main__":
    main()
