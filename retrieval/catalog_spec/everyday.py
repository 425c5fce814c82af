"""Everyday requests the first catalog lacked (issue 14's audit against the scenario and
intent label lists of public spoken-assistant corpora and Android's action lists):
weather, list edits, tickets and bookings, bank and order status, games and apps by name,
kitchen and laundry appliances, the assistant's own voice, today's date."""

from __future__ import annotations

from ._dsl import api, capability, intent, matter, p, tool

_PLACE = p("place", "string", "city or place; default: here")
_DAY = p("day", "date", "day asked about; default: today")

WEATHER = [
    tool(
        "weather.current",
        "Current weather",
        "Tells the weather outside right now: temperature, rain, wind.",
        ["what's the weather", "how warm is it out there", "weather right now",
         "is it raining outside", "current temperature in berlin"],
        capability("weather.current", place="{place}"),
        params=[_PLACE],
        context=["morning"],
    ),
    tool(
        "weather.forecast",
        "Weather forecast",
        "Gives the forecast for a coming day or the week: rain, snow, highs and lows.",
        ["forecast for tomorrow", "will it snow on saturday", "rain later today?",
         "weekly weather forecast", "do I need a coat tomorrow", "weather in madrid on friday"],
        capability("weather.forecast", day="{day}", place="{place}"),
        params=[_DAY, _PLACE],
        context=["evening:0.5"],
    ),
]

TRAVEL = [
    tool(
        "travel.ticket.transit",
        "Buy a train or bus ticket",
        "Buys a train, coach or bus ticket for a trip in a ticketing app.",
        ["buy a rail ticket to leeds", "coach ticket to london for friday",
         "get me a single to brighton", "purchase a bus pass", "train tickets for two"],
        capability("tickets.transit", destination="{destination}", day="{day}"),
        params=[p("destination", "string", "station or city", required=True), _DAY],
        confirm=True,
    ),
    tool(
        "travel.ticket.event",
        "Buy event or movie tickets",
        "Buys tickets for a film, concert, game or show in a ticketing app.",
        ["book seats for the 7pm showing", "buy concert tickets", "movie tickets for tonight",
         "get tickets to the football match", "two seats for the musical"],
        capability("tickets.event", event="{event}", day="{day}"),
        params=[p("event", "string", "film, artist or event", required=True), _DAY],
        confirm=True,
    ),
    tool(
        "travel.flight.search",
        "Find and book flights",
        "Searches flights to a destination for dates in a travel app.",
        ["flights to lisbon in may", "cheap flight to new york", "book a plane ticket home",
         "search airfare to tokyo"],
        capability("travel.flight_search", destination="{destination}", day="{day}"),
        params=[p("destination", "string", "city or airport", required=True), _DAY],
    ),
    tool(
        "travel.flight.status",
        "Flight status",
        "Shows whether a flight is on time, delayed or landed, and its gate.",
        ["is flight ua 90 delayed", "status of my flight", "what gate does my plane leave from",
         "did the plane from dublin land"],
        capability("travel.flight_status", flight="{flight}"),
        params=[p("flight", "string", "flight number; default: the booked one")],
    ),
    tool(
        "travel.hotel.book",
        "Book a hotel",
        "Finds and books a hotel room for dates in a booking app.",
        ["hotel in rome for two nights", "book accommodation in prague",
         "find me a place to stay tonight", "reserve a hotel room"],
        capability("travel.hotel", place="{place}", day="{day}"),
        params=[p("place", "string", "city or area", required=True), _DAY],
        confirm=True,
    ),
    tool(
        "travel.car_rental",
        "Rent a car",
        "Finds a rental car for dates in a car-hire app.",
        ["rent a car at the airport", "car hire for the weekend", "book a rental car"],
        capability("travel.car_rental", place="{place}", day="{day}"),
        params=[p("place", "string", "pick-up place", required=True), _DAY],
        confirm=True,
    ),
]

SHOPPING = [
    tool(
        "shopping.order.track",
        "Track an order",
        "Shows where a delivery or online order is and when it arrives.",
        ["track my delivery", "where is my parcel", "order status",
         "how far away is the delivery driver"],
        capability("order.track"),
    ),
    tool(
        "shopping.restaurant.book",
        "Reserve a table",
        "Books a restaurant table for a time and number of people.",
        ["table for four at 8", "make a dinner reservation", "book a restaurant for saturday",
         "reserve somewhere for lunch tomorrow"],
        capability("restaurant.reserve", place="{place}", time="{time}", people="{people}"),
        params=[p("place", "string", "restaurant or cuisine"), p("time", "datetime", "when"),
                p("people", "integer", "party size", lo=1, hi=30)],
        confirm=True,
    ),
]

ASSISTANT = [
    tool(
        "assistant.voice.volume",
        "Assistant speaking volume",
        "Makes the assistant's own spoken replies quieter or louder, not the phone's media.",
        ["talk more quietly", "your voice is too loud", "speak louder to me",
         "lower your voice", "answer in a whisper"],
        capability("assistant.voice_volume", direction="{direction}"),
        params=[p("direction", "enum", "quieter or louder", required=True,
                  values=["quieter", "louder"])],
    ),
    tool(
        "assistant.voice.speed",
        "Assistant speaking speed",
        "Makes the assistant speak its replies faster or slower.",
        ["slow down when you talk", "speak more quickly", "talk faster",
         "your speech is too rushed"],
        capability("assistant.voice_speed", direction="{direction}"),
        params=[p("direction", "enum", "slower or faster", required=True,
                  values=["slower", "faster"])],
    ),
    tool(
        "assistant.voice.change",
        "Assistant voice",
        "Changes the voice or accent the assistant speaks with.",
        ["use a different voice", "switch to a female voice", "change your accent to australian",
         "pick another assistant voice"],
        capability("assistant.voice", voice="{voice}"),
        params=[p("voice", "string", "voice or accent")],
    ),
    tool(
        "assistant.language",
        "Assistant language",
        "Sets the language the assistant understands and answers in.",
        ["reply in german", "change your language to italian", "speak spanish with me",
         "assistant language"],
        capability("assistant.language", language="{language}"),
        params=[p("language", "string", "language", required=True)],
    ),
    tool(
        "assistant.name",
        "Rename the assistant",
        "Changes the name the assistant answers to.",
        ["can I give you a new name", "change your name", "from now on your name is max"],
        capability("assistant.name", name="{name}"),
        params=[p("name", "string", "new name", required=True)],
    ),
]

PERSONAL = [
    tool(
        "clock.date",
        "Today's date",
        "Tells today's date and day of the week.",
        ["what date is it", "which day of the week is it", "date today", "tell me the date"],
        capability("assistant.date", speak=True),
    ),
    tool(
        "productivity.list.remove",
        "Remove from a list",
        "Removes or ticks off an item on a shopping, to-do or packing list.",
        ["take butter off my shopping list", "delete socks from the packing list",
         "tick off toothpaste", "I got the onions, remove them from the list"],
        capability("lists.remove_item", list="{list}", item="{item}"),
        params=[p("list", "string", "list name"), p("item", "string", "item", required=True)],
    ),
    tool(
        "productivity.list.create",
        "Create a list",
        "Starts a new named list such as groceries, packing or gift ideas.",
        ["make a new list", "new grocery list", "start a gift ideas list",
         "create a list called holiday"],
        intent("com.google.android.gms.actions.CREATE_NOTE",
               extras={"android.intent.extra.TITLE": "{name}"}),
        params=[p("name", "string", "list name", required=True)],
    ),
    tool(
        "productivity.currency_convert",
        "Convert currency",
        "Converts an amount between currencies at today's exchange rate.",
        ["how much is 100 dollars in pounds", "euro to dollar rate", "convert 20 francs to euros",
         "exchange rate yen to pounds"],
        intent("android.intent.action.WEB_SEARCH",
               extras={"query": "{amount} {from_currency} in {to_currency}"}),
        params=[p("amount", "number", "amount"), p("from_currency", "string", "currency held",
                                                    required=True),
                p("to_currency", "string", "currency wanted", required=True)],
    ),
    tool(
        "browser.web_search",
        "Search the web",
        "Runs a web search for what the user says.",
        ["search the web for cheap laptops", "google best hiking boots",
         "look this up online", "web search for train strikes"],
        intent("android.intent.action.WEB_SEARCH", extras={"query": "{query}"}),
        params=[p("query", "string", "what to search", required=True)],
    ),
    tool(
        "wallet.balance",
        "Bank balance",
        "Shows the balance of the user's bank accounts in their banking app.",
        ["how much money do I have", "check my account", "balance of my savings",
         "am I overdrawn"],
        capability("banking.balance"),
    ),
    tool(
        "wallet.pay_bill",
        "Pay a bill",
        "Pays a bill such as electricity, water or phone in the banking app.",
        ["pay the gas bill", "settle my credit card bill", "pay my water bill today",
         "bill payment"],
        capability("banking.pay_bill", payee="{payee}"),
        params=[p("payee", "string", "who the bill is from")],
        confirm=True,
    ),
    tool(
        "media.repeat.off",
        "Repeat off",
        "Stops repeating the song or playlist.",
        ["turn off repeat", "no more looping", "stop playing it on a loop", "disable repeat"],
        api("MediaController.TransportControls.setRepeatMode", mode="REPEAT_MODE_NONE"),
        context=["app:media"],
    ),
]

APPS = [
    tool(
        "apps.launch",
        "Open an app by name",
        "Opens any installed app by its name.",
        ["open my fitness app", "launch the weather app", "start the app called notion",
         "bring up the bbc sounds app"],
        capability("app.launch", app="{app}"),
        params=[p("app", "app", "the app's name", required=True)],
    ),
    tool(
        "apps.game.launch",
        "Play a game",
        "Launches an installed game by name, or suggests one to play.",
        ["fancy a game", "open fortnite", "start clash of clans", "launch a puzzle game",
         "I feel like playing sudoku"],
        capability("game.launch", app="{app}"),
        params=[p("app", "app", "the game's name")],
    ),
]

HOME = [
    tool(
        "home.coffee.brew",
        "Brew coffee",
        "Starts the coffee machine brewing a cup.",
        ["brew some coffee", "start a latte", "get the coffee going", "coffee machine on"],
        capability("home.coffee", drink="{drink}"),
        params=[p("drink", "string", "drink, e.g. espresso")],
        context=["morning"],
    ),
    tool(
        "home.appliance.start",
        "Start an appliance",
        "Starts a program on the dishwasher, washing machine or dryer.",
        ["run the dishwasher", "start a wash cycle", "begin the laundry", "start the tumble dryer"],
        matter("OperationalState.Start", device="{device}"),
        params=[p("device", "string", "appliance", required=True)],
    ),
    tool(
        "home.appliance.stop",
        "Stop an appliance",
        "Pauses or stops the dishwasher, washing machine or dryer.",
        ["stop the dryer", "pause the wash", "halt the dishwasher cycle"],
        matter("OperationalState.Pause", device="{device}"),
        params=[p("device", "string", "appliance", required=True)],
    ),
    tool(
        "home.oven.preheat",
        "Preheat the oven",
        "Preheats the oven to a temperature.",
        ["heat the oven to 220", "warm up the oven", "oven to 350 fahrenheit"],
        matter("TemperatureControl.SetTemperature", temperature="{temperature}"),
        params=[p("temperature", "number", "target temperature", required=True, lo=30, hi=300)],
    ),
    tool(
        "home.fan.off",
        "Turn off the fan",
        "Turns off a smart fan.",
        ["fan off", "stop the fan", "no more fan in the bedroom"],
        matter("FanControl.FanMode", room="{room}", mode="off"),
        params=[p("room", "string", "room name")],
    ),
]

TOOLS = WEATHER + TRAVEL + SHOPPING + ASSISTANT + PERSONAL + APPS + HOME
