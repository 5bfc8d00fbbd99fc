"""Hand-written tables and templates of the demo dataset, read by `make_demo.py`.

Word lists, a fact table of countries, the question wordings of each task family, sentence and
paragraph templates with their slot values, and the formulas behind computed answers (conversion
factors; a plain implementation of each code task, kept apart from the expression shown).
Wordings are tuples indexed by a row's "style" param. Changing anything here changes
`assets/demo.jsonl`: rerun `python assets/make_demo.py` and commit both. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# --- poor answers -------------------------------------------------------------------------

UNKNOWN_ANSWERS = ("I don't know.", "I'm not sure, sorry.", "No idea.", "I cannot answer that.")
OFF_TOPIC_ANSWERS = (
    "Bananas are a good source of potassium.",
    "The weather should be sunny this weekend.",
    "My favourite colour is blue.",
    "Chess is played on a board of sixty-four squares.",
    "Remember to water the plants twice a week.",
    "Cats sleep for most of the day.",
)

# --- names, items and countries -----------------------------------------------------------

NAMES = ("Maya", "Omar", "Lena", "Ravi", "Sofia", "Tom", "Aiko", "Diego", "Nora", "Sam")
ITEMS = ("pencils", "apples", "stickers", "marbles", "cookies", "books", "stamps", "shells")

# country, capital, continent, a major river flowing through it
COUNTRIES: tuple[tuple[str, str, str, str], ...] = (
    ("France", "Paris", "Europe", "Seine"),
    ("Germany", "Berlin", "Europe", "Rhine"),
    ("Italy", "Rome", "Europe", "Po"),
    ("Spain", "Madrid", "Europe", "Ebro"),
    ("Portugal", "Lisbon", "Europe", "Tagus"),
    ("Austria", "Vienna", "Europe", "Danube"),
    ("Hungary", "Budapest", "Europe", "Danube"),
    ("Poland", "Warsaw", "Europe", "Vistula"),
    ("the United Kingdom", "London", "Europe", "Thames"),
    ("Egypt", "Cairo", "Africa", "Nile"),
    ("Sudan", "Khartoum", "Africa", "Nile"),
    ("Nigeria", "Abuja", "Africa", "Niger"),
    ("Mali", "Bamako", "Africa", "Niger"),
    ("Ghana", "Accra", "Africa", "Volta"),
    ("Kenya", "Nairobi", "Africa", "Tana"),
    ("Zambia", "Lusaka", "Africa", "Zambezi"),
    ("the Democratic Republic of the Congo", "Kinshasa", "Africa", "Congo"),
    ("China", "Beijing", "Asia", "Yangtze"),
    ("India", "New Delhi", "Asia", "Ganges"),
    ("Japan", "Tokyo", "Asia", "Shinano"),
    ("Vietnam", "Hanoi", "Asia", "Mekong"),
    ("Thailand", "Bangkok", "Asia", "Chao Phraya"),
    ("Pakistan", "Islamabad", "Asia", "Indus"),
    ("Iraq", "Baghdad", "Asia", "Tigris"),
    ("Bangladesh", "Dhaka", "Asia", "Brahmaputra"),
    ("the United States", "Washington, D.C.", "North America", "Mississippi"),
    ("Canada", "Ottawa", "North America", "St. Lawrence"),
    ("Mexico", "Mexico City", "North America", "Lerma"),
    ("Brazil", "Brasília", "South America", "Amazon"),
    ("Argentina", "Buenos Aires", "South America", "Paraná"),
    ("Colombia", "Bogotá", "South America", "Magdalena"),
    ("Venezuela", "Caracas", "South America", "Orinoco"),
    ("Australia", "Canberra", "Oceania", "Murray"),
    ("New Zealand", "Wellington", "Oceania", "Waikato"),
)
CONTINENTS = ("Europe", "Africa", "Asia", "North America", "South America", "Oceania")

# --- arithmetic ---------------------------------------------------------------------------

ARITH_TEXT: dict[str, tuple[str, str]] = {
    "add": (
        "{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?",
        "{name} owns {a} {item} and gets another {b}. What is the total number of {item}?",
    ),
    "sub": (
        "{name} had {a} {item} and gave {b} to a friend. How many {item} are left?",
        "{name} started with {a} {item} and lost {b} of them. How many {item} remain?",
    ),
    "mul": (
        "A box holds {a} {item}. How many {item} are in {b} boxes?",
        "Each box contains {a} {item}. How many {item} do {b} boxes contain in total?",
    ),
    "div": (
        "{name} shares {a} {item} equally among {b} friends. How many does each friend get?",
        "{name} splits {a} {item} evenly between {b} friends. How many {item} does each get?",
    ),
    "two": (
        "{name} buys {a} packs of {b} {item} and uses {c} of them. How many {item} are left?",
        "{name} gets {a} packs with {b} {item} in each and gives away {c}. How many are left?",
    ),
    "speed": (
        "A train travels at {a} km per hour for {b} hours. How many kilometres does it cover?",
        "How far does a car go in {b} hours at a steady {a} km per hour, in kilometres?",
    ),
}

# --- unit conversion ----------------------------------------------------------------------

# key: (from unit, to unit, how, lowest x, highest x)
CONVERSIONS: dict[str, tuple[str, str, str, int, int]] = {
    "km_mi": ("km", "miles", "Multiply by 0.621371:", 2, 300),
    "mi_km": ("miles", "km", "Multiply by 1.609344:", 2, 200),
    "kg_lb": ("kg", "pounds", "Multiply by 2.20462:", 2, 120),
    "lb_kg": ("pounds", "kg", "Multiply by 0.453592:", 2, 250),
    "c_f": ("degrees Celsius", "degrees Fahrenheit", "Multiply by 9/5 and add 32:", -20, 45),
    "f_c": ("degrees Fahrenheit", "degrees Celsius", "Subtract 32, then multiply by 5/9:", 0, 110),
    "m_ft": ("metres", "feet", "Multiply by 3.28084:", 2, 500),
    "cm_in": ("centimetres", "inches", "Divide by 2.54:", 2, 200),
    "l_gal": ("litres", "US gallons", "Multiply by 0.264172:", 2, 100),
}
CONVERT_FN: dict[str, Callable[[float], float]] = {
    "km_mi": lambda x: x * 0.621371,
    "mi_km": lambda x: x * 1.609344,
    "kg_lb": lambda x: x * 2.20462,
    "lb_kg": lambda x: x * 0.453592,
    "c_f": lambda x: x * 9 / 5 + 32,
    "f_c": lambda x: (x - 32) * 5 / 9,
    "m_ft": lambda x: x * 3.28084,
    "cm_in": lambda x: x / 2.54,
    "l_gal": lambda x: x * 0.264172,
}
# the mistaken formula of a poor answer: the inverse conversion
INVERSE = {"km_mi": "mi_km", "mi_km": "km_mi", "kg_lb": "lb_kg", "lb_kg": "kg_lb", "c_f": "f_c"}
INVERSE.update({"f_c": "c_f", "m_ft": "cm_in", "cm_in": "m_ft", "l_gal": "kg_lb"})
CONVERT_TEXT = (
    "Convert {x} {u1} to {u2}.",
    "What is {x} {u1} in {u2}?",
    "Express {x} {u1} in {u2}.",
)

# --- geography ----------------------------------------------------------------------------

GEO_TEXT: dict[str, tuple[str, ...]] = {
    "capital": (
        "What is the capital of {c}?",
        "Which city is the capital of {c}?",
        "Name the capital city of {c}.",
    ),
    "continent": (
        "On which continent is {c}?",
        "Which continent is {c} part of?",
        "Name the continent where {c} lies.",
    ),
    "river": (
        "Name a major river that flows through {c}.",
        "Which major river runs through {c}?",
        "Give one large river of {c}.",
    ),
}

# --- grammar ------------------------------------------------------------------------------

# kind: (sentence with the error, corrected sentence, slot values); the last slot is the one a
# near-duplicate changes. Tuple slots are indexed in the templates.
GRAMMAR: dict[str, tuple[str, str, dict[str, tuple[Any, ...]]]] = {
    "agreement": (
        "{s} {v[0]} {v[2]} {t}.",
        "{s} {v[1]} {v[2]} {t}.",
        {
            "s": ("My sister", "Our teacher", "He", "She", "The manager", "My neighbour"),
            "v": (
                ("walk", "walks", "to the park"),
                ("go", "goes", "to the gym"),
                ("drink", "drinks", "green tea"),
                ("read", "reads", "the newspaper"),
                ("cook", "cooks", "dinner"),
                ("take", "takes", "the bus to work"),
            ),
            "t": ("every morning", "every evening", "on Sundays", "twice a week", "after work"),
        },
    ),
    "plural": (
        "The {s} {v[1]} {v[2]} {t}.",
        "The {s} {v[0]} {v[2]} {t}.",
        {
            "s": ("children", "students", "players", "workers", "neighbours"),
            "v": (
                ("play", "plays", "football"),
                ("eat", "eats", "lunch together"),
                ("arrive", "arrives", "early"),
                ("practise", "practises", "music"),
            ),
            "t": ("every day", "on Fridays", "after school", "in the summer"),
        },
    ),
    "a_an": (
        "{s} bought a {n} {t}.",
        "{s} bought an {n} {t}.",
        {
            "s": ("I", "She", "My uncle", "We", "The chef"),
            "n": ("apple", "orange", "umbrella", "onion", "egg", "avocado"),
            "t": ("yesterday", "this morning", "at the market", "for lunch"),
        },
    ),
    "an_a": (
        "{s} saw an {n} {t}.",
        "{s} saw a {n} {t}.",
        {
            "s": ("I", "The boy", "My aunt", "We", "They"),
            "n": ("bird", "horse", "rabbit", "fox", "boat"),
            "t": ("in the garden", "near the river", "on the way home", "this morning"),
        },
    ),
    "their": (
        "The {s} forgot there {n} at {t}.",
        "The {s} forgot their {n} at {t}.",
        {
            "s": ("students", "players", "tourists", "children", "guests"),
            "n": ("tickets", "bags", "keys", "umbrellas", "notebooks"),
            "t": ("home", "the hotel", "school", "the station"),
        },
    ),
    "its": (
        "The {s} changed it's {n} {t}.",
        "The {s} changed its {n} {t}.",
        {
            "s": ("company", "school", "club", "café", "museum"),
            "n": ("name", "logo", "opening hours", "website", "prices"),
            "t": ("last year", "in March", "this week", "recently"),
        },
    ),
    "participle": (
        "{s[0]} {s[1]} {v[0]} {v[2]} {t}.",
        "{s[0]} {s[1]} {v[1]} {v[2]} {t}.",
        {
            "s": (("I", "have"), ("We", "have"), ("They", "have"), ("She", "has"), ("Dad", "has")),
            "v": (
                ("went", "gone", "home"),
                ("ate", "eaten", "lunch"),
                ("saw", "seen", "that film"),
                ("wrote", "written", "the report"),
                ("did", "done", "the dishes"),
            ),
            "t": ("already", "today", "this week"),
        },
    ),
    "fewer": (
        "There are less {n} in the {s} {t}.",
        "There are fewer {n} in the {s} {t}.",
        {
            "n": ("cars", "birds", "tourists", "trees", "shops"),
            "s": ("town", "park", "city centre", "village"),
            "t": ("this year", "these days", "than before", "now"),
        },
    ),
    "comparative": (
        "This {n} is more {s} than {t}.",
        "This {n} is {s} than {t}.",
        {
            "n": ("bag", "phone", "chair", "box", "laptop"),
            "s": ("cheaper", "bigger", "smaller", "newer", "heavier"),
            "t": ("that one", "the old one", "mine", "the one in the shop"),
        },
    ),
    "pronoun": (
        "Me and {s} {v} {t}.",
        "{s} and I {v} {t}.",
        {
            "s": ("Anna", "my brother", "Carlos", "my friend", "Priya"),
            "v": ("went to the cinema", "cooked dinner", "visited the museum", "played tennis"),
            "t": ("yesterday", "last weekend", "on Friday", "after class"),
        },
    ),
}
GRAMMAR_TEXT = (
    "Correct the grammar in this sentence.",
    "Fix the grammatical error in the sentence.",
    "Rewrite the sentence with correct grammar.",
)

# --- code ---------------------------------------------------------------------------------

WORDS = ("hello", "python", "level", "banana", "garden", "rocket", "radar", "window", "noon")
VOCAB = ("red", "green", "blue", "sky", "sea", "sun", "moon", "rain", "wind", "stone")
SENTENCES = (
    "the cat sat on the mat",
    "we walked to the old bridge",
    "rain fell all night",
    "she reads a book every evening",
    "time flies",
    "the quick brown fox jumps over the lazy dog",
    "please open the window",
    "coffee first and then work",
)
# task: (variable, input kind, expression, what the expression does)
CODE_TASKS: dict[str, tuple[str, str, str, str]] = {
    "reverse": ("s", "word", "s[::-1]", "reverses the string s"),
    "palindrome": ("s", "word", "s == s[::-1]", "checks whether s is a palindrome"),
    "upper": ("word", "word", "word.upper()", "converts word to upper case"),
    "vowels": ("word", "word", "sum(ch in 'aeiou' for ch in word)", "counts the vowels in word"),
    "sum": ("nums", "nums", "sum(nums)", "adds up the list nums"),
    "max": ("nums", "nums", "max(nums)", "finds the largest number in nums"),
    "evens": ("nums", "nums", "[x for x in nums if x % 2 == 0]", "keeps the even numbers of nums"),
    "unique": ("nums", "nums", "sorted(set(nums))", "returns the sorted distinct values of nums"),
    "squares": ("n", "n", "[i * i for i in range(1, n + 1)]", "lists the squares of 1 to n"),
    "count_words": ("sentence", "sentence", "len(sentence.split())", "counts words in sentence"),
    "join": ("words", "words", "' '.join(words)", "joins the strings in words with spaces"),
}
CODE_TEXT = (
    "Write a Python expression that {does}.",
    "Give a one-line Python expression that {does}.",
    "Which Python one-liner {does}?",
)
CODE_RESULT: dict[str, Callable[[Any], Any]] = {
    "reverse": lambda s: "".join(reversed(s)),
    "palindrome": lambda s: all(s[i] == s[len(s) - 1 - i] for i in range(len(s))),
    "upper": lambda s: "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s),
    "vowels": lambda s: len([c for c in s if c in "aeiou"]),
    "sum": lambda xs: sum(xs),
    "max": lambda xs: sorted(xs)[-1],
    "evens": lambda xs: [x for x in xs if x % 2 == 0],
    "unique": lambda xs: sorted(dict.fromkeys(xs)),
    "squares": lambda n: [i**2 for i in range(1, n + 1)],
    "count_words": lambda s: s.count(" ") + 1,
    "join": lambda ws: " ".join(ws),
}

# --- summaries ----------------------------------------------------------------------------

TOWNS = ("Millbrook", "Ashford", "Riverton", "Kelso", "Dunmore", "Fairview")
# scenario: (paragraph, one-sentence summary, slot values); "n" is the number a near-duplicate
# changes. Tuple slots are indexed in the templates.
SUMMARIES: dict[str, tuple[str, str, dict[str, tuple[Any, ...]]]] = {
    "opening": (
        "{town} opened a new {f} in {m}. In the first {k} weeks, {n} residents used it. "
        "Staff credit {why} for its popularity. The council plans to {plan} next year.",
        "{town}'s new {f} drew {n} residents in its first {k} weeks, and the council plans to "
        "{plan} next year.",
        {
            "town": TOWNS,
            "f": ("library", "swimming pool", "community garden", "skate park", "climbing wall"),
            "m": ("March", "April", "May", "June", "September", "October"),
            "k": (3, 4, 5, 6, 8),
            "n": tuple(range(200, 3001, 50)),
            "why": (
                "the long opening hours",
                "the central location",
                "free entry",
                "word of mouth",
            ),
            "plan": ("extend it", "open a second site", "add evening events", "hire more staff"),
        },
    ),
    "study": (
        "Researchers at {uni} followed {n} {who} for {k} months. They found that {found}. "
        "The effect was strongest among {group}. The team now hopes to {next}.",
        "A {k}-month study of {n} {who} at {uni} found that {found}, especially among {group}.",
        {
            "uni": ("Northfield University", "Lakeside College", "Eastbrook Institute"),
            "n": tuple(range(40, 601, 10)),
            "who": ("adults", "students", "office workers", "retired people"),
            "k": (2, 3, 6, 9, 12),
            "found": (
                "a short daily walk improved sleep",
                "reading before bed reduced stress",
                "regular breaks improved focus",
                "drinking more water reduced headaches",
            ),
            "group": ("those who started with the lowest scores", "the most active participants"),
            "next": ("repeat the study with a larger group", "follow participants for a year"),
        },
    ),
    "sales": (
        "{co[0]} sold {n:,} {co[1]} in {q}, up {p} percent from a year earlier. The company said "
        "the rise came from {why}. Some shops sold out within days. {co[0]} expects {out}.",
        "{co[0]} sold {n:,} {co[1]} in {q}, up {p} percent, thanks to {why}.",
        {
            "co": (
                ("Brightleaf Foods", "ready meals"),
                ("Northwind Cycles", "bicycles"),
                ("Pinecrest Tools", "drills"),
                ("Bluewave Audio", "headphones"),
                ("Harbor Tea", "gift boxes"),
            ),
            "n": tuple(range(1000, 90001, 500)),
            "q": (
                "the first quarter",
                "the second quarter",
                "the third quarter",
                "the last quarter",
            ),
            "p": tuple(range(3, 41)),
            "why": (
                "strong online demand",
                "a popular new model",
                "lower prices",
                "new export markets",
            ),
            "out": ("growth to continue next year", "a quieter summer", "to hire more staff soon"),
        },
    ),
    "storm": (
        "A storm brought {n} millimetres of rain to {town} on {day}. Several roads were closed "
        "and {k} schools shut early. Volunteers {act} through the night. Forecasters expect {out}.",
        "A storm dropped {n} mm of rain on {town} on {day}, closing roads and {k} schools.",
        {
            "town": TOWNS,
            "n": tuple(range(30, 151, 5)),
            "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
            "k": (2, 3, 4, 5, 6, 8, 10, 12),
            "act": ("cleared fallen trees", "handed out sandbags", "checked on older neighbours"),
            "out": ("drier weather by the weekend", "more rain later in the week"),
        },
    ),
}
SUMMARY_TEXT = (
    "Summarize the paragraph in one sentence.",
    "Write a one-sentence summary of the text.",
    "Give the main point of this paragraph in a single sentence.",
)
