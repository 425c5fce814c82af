"""Non-tool needs of simulated users: questions, look-ups and chit-chat no system tool does.

Written for the simulator, independently of the SysToolKit catalog and of retrieval's
labelled set. Each need has a few phrasings (how a user would tap or say it; the simulator
measures a suggestion's relevance against them), the assistant's short answer when the need
is itself the query of a turn, and the tool categories after which it tends to come up
(`related`), which makes it a plausible follow-up of those turns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    id: str
    phrasings: tuple[str, ...]
    answer: str
    related: tuple[str, ...] = ()


NEEDS: tuple[Need, ...] = (
    Need("weather.tomorrow", ("what's the weather tomorrow", "will it rain tomorrow",
                              "do I need an umbrella tomorrow"),
         "Tomorrow: light rain in the morning, 14°C.", ("clock", "calendar", "navigation")),
    Need("weather.now", ("how warm is it outside", "what's the temperature right now",
                         "is it cold out"), "It's 9°C and cloudy.", ("home", "health")),
    Need("traffic.commute", ("how is traffic on my way to work", "how long is my commute today",
                             "is there a jam on the highway"),
         "Traffic is light, about 25 minutes to work.", ("navigation", "driving", "clock")),
    Need("news.headlines", ("what's in the news today", "read me the top headlines",
                            "any breaking news"), "Here are today's top stories.",
         ("media", "browser")),
    Need("sports.score", ("what was the score last night", "did my team win",
                          "when is the next match"), "Your team won 2 to 1.",
         ("media", "browser")),
    Need("facts.height", ("how tall is the eiffel tower", "how high is mount everest",
                          "what is the longest river"), "The Eiffel Tower is 330 m tall.",
         ("browser",)),
    Need("facts.capital", ("what is the capital of australia", "who is the president of france",
                           "how many people live in tokyo"),
         "The capital of Australia is Canberra.", ("browser",)),
    Need("convert.units", ("how many ounces in a cup", "convert 10 miles to kilometres",
                           "what is 30 celsius in fahrenheit"), "One cup is 8 fluid ounces.",
         ("productivity",)),
    Need("convert.currency", ("how much is 50 euros in dollars", "what's the dollar exchange rate",
                              "convert 100 pounds to yen"), "50 euros is about 54 dollars.",
         ("wallet",)),
    Need("math.tip", ("what's a 20 percent tip on 45", "split 120 between four people",
                      "what is 15 times 12"), "A 20% tip on 45 is 9.", ("wallet", "productivity")),
    Need("define.word", ("what does serendipity mean", "define ephemeral",
                         "how do you spell necessary"), "Serendipity: a happy accident.",
         ("input", "productivity")),
    Need("translate.phrase", ("how do you say thank you in japanese",
                              "translate good morning to spanish", "what is hello in french"),
         "In Japanese, thank you is arigatou.", ("input", "accessibility")),
    Need("recipe.dinner", ("what can I cook for dinner tonight", "give me a quick pasta recipe",
                           "how long do I boil an egg"), "Try a 15-minute garlic pasta.",
         ("clock", "home")),
    Need("joke", ("tell me a joke", "say something funny", "make me laugh"),
         "Why did the phone wear glasses? It lost its contacts.", ("media",)),
    Need("chitchat.howareyou", ("how are you today", "what's up", "are you having a good day"),
         "I'm doing great, thanks for asking!", ()),
    Need("chitchat.thanks", ("thank you", "thanks that's all", "you're awesome"),
         "You're welcome!", ()),
    Need("assistant.identity", ("what's your name", "who made you", "are you a robot"),
         "I'm your phone's assistant.", ()),
    Need("health.sleep", ("how many hours of sleep do I need", "tips to fall asleep faster",
                          "is a nap good for you"), "Adults need 7 to 9 hours of sleep.",
         ("health", "wellbeing", "clock")),
    Need("health.steps", ("is ten thousand steps a day enough",
                          "how many calories does walking burn", "how far is ten thousand steps"),
         "10,000 steps is about 8 km.", ("health",)),
    Need("places.restaurant", ("find a good restaurant near me", "where can I get coffee nearby",
                               "best pizza place around here"),
         "There are three well-rated places within 500 m.", ("navigation", "location")),
    Need("places.opening", ("when does the supermarket close", "is the pharmacy open now",
                            "what time does the bank open"), "The supermarket closes at 9 pm.",
         ("navigation", "calendar")),
    Need("movies.showtimes", ("what movies are playing tonight", "find showtimes for the new film",
                              "is there a good movie on tv"), "Four films are playing tonight.",
         ("media", "calendar")),
    Need("music.whatsong", ("what song is this", "who sings this song",
                            "what's the name of this tune"),
         "This is a song by Daft Punk.", ("media", "sound")),
    Need("history.fact", ("when did world war two end", "who invented the telephone",
                          "when was the moon landing"), "World War II ended in 1945.",
         ("browser",)),
    Need("time.zone", ("what time is it in new york", "time difference with tokyo",
                       "is it morning in sydney now"), "It's 9:15 am in New York.",
         ("clock", "calendar")),
    Need("holiday.next", ("when is the next public holiday", "is monday a holiday",
                          "how many days until christmas"), "The next holiday is in 12 days.",
         ("calendar", "clock")),
    Need("shopping.price", ("how much does a new phone cost", "is there a sale on headphones",
                            "compare prices for running shoes"),
         "Prices start at about 300 dollars.", ("wallet", "browser")),
    Need("phone.help", ("why is my phone so slow", "how do I make my battery last longer",
                        "why is my phone getting hot"), "Closing unused apps can help.",
         ("battery", "storage", "system")),
    Need("stocks.price", ("how are the markets doing", "what's the apple stock price",
                          "did the stock market go up"), "Markets are up 0.4% today.",
         ("wallet",)),
    Need("trivia.animals", ("how fast can a cheetah run", "how long do cats live",
                            "what is the largest animal"), "A cheetah can run 110 km/h.",
         ("browser", "camera")),
)
