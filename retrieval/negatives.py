"""Texts that invoke no tool, written by a procedure: templates × slot fillers.

The linker must learn what "no tool" looks like, and the tuning rows hold few such texts
(53 in the spoken tune half). Hand-writing more after looking at where the linker fails
would tune it to one set's failures, so these are generated from a fixed list of kinds of
requests an assistant hears that no phone action serves (this project's procedure; no
evaluation row was read to write it):

- facts and trivia ("how tall is the eiffel tower", "who painted the night watch");
- explanations of things, phone topics included, which share words with tools but ask how
  something works ("how does bluetooth work", "who invented the flashlight");
- word questions ("what does ubiquitous mean"), advice and opinions ("is it bad to skip
  breakfast"), creative requests ("write a haiku about autumn"), chit-chat and feelings.

Kinds a tool serves are left out on purpose: weather, time and dates, arithmetic, unit and
currency conversion, translation, web search ("search for …", "look up …"), news and
anything on the user's own device or accounts. Deterministic (seeded); pure Python.
"""

from __future__ import annotations

import random

_LANDMARKS = ("the eiffel tower", "mount kilimanjaro", "the statue of liberty", "big ben",
              "the great wall of china", "the burj khalifa", "niagara falls", "k2",
              "the empire state building", "the golden gate bridge")
_PEOPLE = ("albert einstein", "marie curie", "leonardo da vinci", "shakespeare",
           "napoleon", "cleopatra", "beyonce", "lionel messi", "frida kahlo", "isaac newton",
           "nelson mandela", "the queen of england")
_COUNTRIES = ("canada", "peru", "japan", "kenya", "norway", "argentina", "vietnam",
              "portugal", "egypt", "new zealand")
_WORKS = ("the night watch", "the starry night", "hamlet", "pride and prejudice",
          "the odyssey", "bohemian rhapsody", "the sistine chapel ceiling", "don quixote")
_EVENTS = ("the french revolution", "the moon landing", "the fall of the berlin wall",
           "the first world war", "the printing press", "the roman empire")
_NATURE = ("the sky blue", "the ocean salty", "grass green", "the sun hot", "ice slippery",
           "the moon white", "snow white")
_ANIMALS = ("an octopus", "a giraffe", "a blue whale", "a hummingbird", "a sloth",
            "an elephant", "a penguin", "a shark")
_TOPICS = ("bluetooth", "wifi", "gps", "5g", "nfc", "a touchscreen", "a smart speaker",
           "airplane mode", "dark mode", "a lithium battery", "wireless charging",
           "a vpn", "face recognition", "a smart thermostat", "a flashlight", "an alarm clock",
           "a camera sensor", "noise cancelling", "a qr code", "cloud storage", "an sd card",
           "a hotspot", "a podcast", "streaming", "a smartwatch", "electricity", "a rainbow",
           "photosynthesis", "a black hole", "inflation", "a vaccine", "the internet")
_WORDS = ("ubiquitous", "ephemeral", "serendipity", "melancholy", "quintessential",
          "gregarious", "nostalgia", "pragmatic", "schadenfreude", "ambivalent")
_ACTIVITIES = ("skip breakfast", "drink coffee at night", "run every day", "learn two "
               "languages at once", "sleep with the window open", "eat eggs every day",
               "work standing up", "take a gap year", "buy a used car", "swim after eating")
_PRODUCTS = ("laptop for students", "running shoes", "board game for kids", "pizza "
             "topping", "first car", "beginner guitar", "city to visit in europe",
             "dog breed for an apartment")
_CREATIVE = ("a poem", "a haiku", "a short story", "a limerick", "a song", "a riddle")
_FEELINGS = ("tired", "happy", "bored", "nervous", "excited", "lonely", "stressed",
             "hungry")

_TEMPLATES: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    ("how tall is {x}", {"x": _LANDMARKS}),
    ("how old is {x}", {"x": _LANDMARKS + _PEOPLE}),
    ("who was {x}", {"x": _PEOPLE}),
    ("tell me about {x}", {"x": _PEOPLE + _EVENTS}),
    ("when was {x} born", {"x": _PEOPLE}),
    ("what's the capital of {x}", {"x": _COUNTRIES}),
    ("what language do they speak in {x}", {"x": _COUNTRIES}),
    ("how many people live in {x}", {"x": _COUNTRIES}),
    ("who painted {x}", {"x": _WORKS}),
    ("who wrote {x}", {"x": _WORKS}),
    ("when did {x} happen", {"x": _EVENTS}),
    ("why did {x} end", {"x": _EVENTS}),
    ("why is {x}", {"x": _NATURE}),
    ("how long does {x} live", {"x": _ANIMALS}),
    ("what does {x} eat", {"x": _ANIMALS}),
    ("how does {x} work", {"x": _TOPICS}),
    ("who invented {x}", {"x": _TOPICS}),
    ("explain {x} to me like I'm five", {"x": _TOPICS}),
    ("what's the history of {x}", {"x": _TOPICS}),
    ("is {x} bad for your health", {"x": _TOPICS}),
    ("what's the difference between {x} and {y}", {"x": _TOPICS, "y": _TOPICS}),
    ("what does {x} mean", {"x": _WORDS}),
    ("how do you pronounce {x}", {"x": _WORDS}),
    ("use {x} in a sentence", {"x": _WORDS}),
    ("is it bad to {x}", {"x": _ACTIVITIES}),
    ("should I {x}", {"x": _ACTIVITIES}),
    ("what's the best {x}", {"x": _PRODUCTS}),
    ("can you recommend a {x}", {"x": _PRODUCTS}),
    ("write {x} about {y}", {"x": _CREATIVE, "y": _TOPICS + _ANIMALS}),
    ("tell me {x} about {y}", {"x": ("a fun fact", "something interesting", "a story"),
                               "y": _ANIMALS + _LANDMARKS}),
    ("I'm feeling {x}", {"x": _FEELINGS}),
    ("I'm so {x} today", {"x": _FEELINGS}),
    ("do you ever get {x}", {"x": _FEELINGS}),
    ("what's your favourite {x}", {"x": ("color", "movie", "food", "animal", "book",
                                         "season")}),
    ("do you like {x}", {"x": ("cats", "music", "football", "pizza", "rainy days", "me")}),
    ("are you {x}", {"x": ("a robot", "alive", "smarter than me", "married", "happy",
                           "listening to me")}),
    ("{x}", {"x": ("thank you so much", "you're funny", "that's cool", "good night",
                   "nice to meet you", "how's it going", "what's up with you", "I love you",
                   "you're the best", "that was wrong", "ok never mind", "hmm let me think",
                   "who made you", "what can't you do", "sing happy birthday",
                   "let's play twenty questions")}),
)


def no_tool_texts(n: int = 300, *, seed: int = 14) -> list[str]:
    """`n` distinct generated texts that invoke no tool (fewer if the templates run out),
    drawn round-robin over the templates so every kind is represented."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    for _ in range(50):  # rounds over the templates; a template adds ≤ 1 text per round
        for template, slots in _TEMPLATES:
            values = {name: rng.choice(choices) for name, choices in slots.items()}
            if len(set(values.values())) < len(values):
                continue  # "the difference between wifi and wifi"
            text = template.format(**values)
            if text not in seen:
                seen.add(text)
                out.append(text)
                if len(out) >= n:
                    return out
    return out
