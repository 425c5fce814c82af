"""Sound, vibration and Do Not Disturb: per-stream volume, ringer modes, ringtones, DND."""

from __future__ import annotations

from ._dsl import Json, api, intent, p, panel, setting, settings, settings_raw, tool

# stream -> (AudioManager constant, noun, what it controls, hints)
_STREAMS = {
    "media": (
        "STREAM_MUSIC",
        "media volume",
        "music, videos and games",
        ["headset", "app:media", "app:video"],
    ),
    "ring": ("STREAM_RING", "ringer volume", "the incoming call ringtone", []),
    "alarm": ("STREAM_ALARM", "alarm volume", "alarm sounds", ["night"]),
    "notification": ("STREAM_NOTIFICATION", "notification volume", "notification sounds", []),
    "call": (
        "STREAM_VOICE_CALL",
        "call volume",
        "the other person's voice during a call",
        ["app:phone"],
    ),
}

# (stream, operation) -> how people phrase it
_EXAMPLES = {
    ("media", "up"): ["turn the music up", "louder please", "increase media volume"],
    ("media", "down"): ["turn the music down", "this video is too loud", "lower media volume"],
    ("media", "set"): [
        "set media volume to 50 percent",
        "music volume at 30%",
        "put the volume on 8",
    ],
    ("media", "mute"): ["mute the music", "silence media", "mute this video"],
    ("media", "max"): ["max volume", "crank the music all the way up", "full blast"],
    ("ring", "up"): [
        "make my ringtone louder",
        "raise the ringer volume",
        "I keep missing calls, ring louder",
    ],
    ("ring", "down"): ["lower the ringer", "ringtone is too loud", "quieter ringing"],
    ("ring", "set"): [
        "set ring volume to 60 percent",
        "ringer at level 5",
        "ringtone volume to 40%",
    ],
    ("ring", "mute"): ["mute the ringer", "no ringing for calls", "silence incoming call sounds"],
    ("ring", "max"): [
        "ringer as loud as possible",
        "maximum ring volume",
        "loudest ringtone setting",
    ],
    ("alarm", "up"): [
        "make the alarm louder",
        "raise alarm volume",
        "I sleep through my alarm, turn it up",
    ],
    ("alarm", "down"): ["alarm is too loud", "quieter alarm", "lower the alarm volume"],
    ("alarm", "set"): [
        "set alarm volume to 70 percent",
        "alarm volume at half",
        "alarm loudness to 6",
    ],
    ("alarm", "mute"): ["mute alarm sounds", "silence the alarm volume", "alarms without sound"],
    ("alarm", "max"): [
        "alarm volume to max",
        "loudest possible alarm",
        "full volume for my wake up alarm",
    ],
    ("notification", "up"): [
        "louder notifications",
        "raise notification volume",
        "I don't hear message pings",
    ],
    ("notification", "down"): [
        "quieter notifications",
        "notification sounds are too loud",
        "lower the ping volume",
    ],
    ("notification", "set"): [
        "set notification volume to 20 percent",
        "notification sound level 3",
        "alerts volume at 50%",
    ],
    ("notification", "mute"): [
        "mute notification sounds",
        "silence message alerts",
        "no dings for notifications",
    ],
    ("notification", "max"): [
        "notification volume max",
        "loudest notification sound",
        "make alerts as loud as possible",
    ],
    ("call", "up"): ["I can't hear the caller", "raise call volume", "louder earpiece"],
    ("call", "down"): ["the caller is too loud", "lower the in-call volume", "quieter earpiece"],
    ("call", "set"): [
        "set call volume to 80 percent",
        "in-call volume level 4",
        "voice call volume to half",
    ],
    ("call", "mute"): ["mute the call audio", "silence the earpiece", "call volume to zero"],
    ("call", "max"): [
        "max call volume",
        "earpiece as loud as it gets",
        "full volume for phone calls",
    ],
}

_OPS = {
    "up": (
        "Raise",
        "Makes {what} louder by raising the {noun} one step.",
        {"stream": "{const}", "direction": "ADJUST_RAISE"},
        "AudioManager.adjustStreamVolume",
    ),
    "down": (
        "Lower",
        "Quiets {what} by lowering the {noun} one notch.",
        {"stream": "{const}", "direction": "ADJUST_LOWER"},
        "AudioManager.adjustStreamVolume",
    ),
    "set": (
        "Set",
        "Sets the {noun} ({what}) to an exact level.",
        {"stream": "{const}", "index": "{{level}}"},
        "AudioManager.setStreamVolume",
    ),
    "mute": (
        "Mute",
        "Silences {what} without changing other sounds.",
        {"stream": "{const}", "direction": "ADJUST_MUTE"},
        "AudioManager.adjustStreamVolume",
    ),
    "max": (
        "Maximum",
        "Pushes the {noun} to its loudest setting for {what}.",
        {"stream": "{const}", "index": "MAX"},
        "AudioManager.setStreamVolume",
    ),
}


def _volume_tool(stream: str, op: str) -> Json:
    const, noun, what, hints = _STREAMS[stream]
    verb, desc, args, target = _OPS[op]
    fmt = {"noun": noun, "what": what, "const": const}
    params = (
        [p("level", "integer", "volume", required=True, lo=0, hi=100, unit="%")]
        if op == "set"
        else []
    )
    extra = ["night"] if op in ("down", "mute") and "night" not in hints else []
    return tool(
        f"sound.volume.{stream}.{op}",
        f"{verb} {noun}",
        desc.format(**fmt),
        _EXAMPLES[(stream, op)],
        api(target, **{k: v.format(**fmt) for k, v in args.items()}),
        params=params,
        context=hints + extra,
    )


TOOLS = [_volume_tool(s, op) for s in _STREAMS for op in _OPS] + [
    tool(
        "sound.volume.panel",
        "Show volume panel",
        "Shows the volume panel with sliders for media, calls, ring and alarms.",
        ["show volume sliders", "volume controls", "open the volume panel"],
        panel("VOLUME"),
    ),
    tool(
        "sound.volume.unmute_all",
        "Unmute the phone",
        "Restores sound on every stream after the phone was muted.",
        ["unmute my phone", "turn the sound back on", "why is everything silent"],
        api("AudioManager.adjustStreamVolume", stream="STREAM_RING", direction="ADJUST_UNMUTE"),
    ),
    tool(
        "sound.ringer.silent",
        "Silent mode",
        "Puts the ringer in silent mode: no ring, no vibration for calls and messages.",
        ["put my phone on silent", "silent mode", "no sounds at all, I'm in a meeting"],
        api("AudioManager.setRingerMode", mode="RINGER_MODE_SILENT"),
        context=["night"],
    ),
    tool(
        "sound.ringer.vibrate",
        "Vibrate mode",
        "Switches the ringer to vibrate only: calls buzz but don't ring.",
        ["vibrate only", "put it on vibrate", "switch to buzz mode"],
        api("AudioManager.setRingerMode", mode="RINGER_MODE_VIBRATE"),
    ),
    tool(
        "sound.ringer.normal",
        "Ring mode",
        "Returns the ringer to normal so calls and notifications make sound.",
        ["turn the ringer back on", "ring mode", "take it off silent"],
        api("AudioManager.setRingerMode", mode="RINGER_MODE_NORMAL"),
        context=["morning"],
    ),
    tool(
        "sound.settings",
        "Sound settings",
        "Opens sound and vibration settings.",
        ["sound settings", "audio settings", "open sound and vibration"],
        settings("SOUND_SETTINGS"),
    ),
    tool(
        "sound.ringtone.set",
        "Change ringtone",
        "Opens the ringtone picker to choose the sound for incoming calls.",
        ["change my ringtone", "pick a new ring tone", "different sound when someone calls"],
        intent(
            "android.intent.action.RINGTONE_PICKER",
            extras={"android.intent.extra.ringtone.TYPE": "TYPE_RINGTONE"},
        ),
    ),
    tool(
        "sound.notification_sound.set",
        "Change notification sound",
        "Picks the default sound that plays for notifications.",
        ["change notification sound", "different ping for messages", "new notification tone"],
        intent(
            "android.intent.action.RINGTONE_PICKER",
            extras={"android.intent.extra.ringtone.TYPE": "TYPE_NOTIFICATION"},
        ),
    ),
    tool(
        "sound.alarm_sound.set",
        "Change alarm sound",
        "Picks the default alarm tone.",
        ["change alarm tone", "wake up to a different sound", "new alarm ringtone"],
        intent(
            "android.intent.action.RINGTONE_PICKER",
            extras={"android.intent.extra.ringtone.TYPE": "TYPE_ALARM"},
        ),
        context=["night"],
    ),
    tool(
        "sound.vibration.settings",
        "Vibration and haptics",
        "Opens vibration and haptics: call vibration, touch feedback strength.",
        ["vibration settings", "haptic feedback strength", "make the vibration stronger"],
        settings_raw("android.settings.VIBRATE_SETTINGS", "Settings.ACTION_VIBRATE_SETTINGS"),
    ),
    tool(
        "sound.vibrate_on_ring",
        "Vibrate for calls",
        "Makes the phone vibrate as well as ring for incoming calls.",
        ["vibrate when ringing", "buzz and ring for calls", "add vibration to my ringtone"],
        setting("Settings.System.VIBRATE_WHEN_RINGING", 1),
    ),
    tool(
        "sound.touch_sounds.off",
        "Turn off touch sounds",
        "Stops the clicks and tones played on taps, keyboard and screen lock.",
        ["turn off keyboard clicks", "disable touch sounds", "stop the tapping noises"],
        setting("Settings.System.SOUND_EFFECTS_ENABLED", 0),
    ),
    tool(
        "sound.spatial_audio",
        "Spatial audio",
        "Turns on spatial audio with head tracking on supported headphones.",
        ["spatial audio on", "3d surround sound in my earbuds", "head tracking audio"],
        api("Spatializer.setEnabled", enabled=True),
        context=["headset"],
    ),
    tool(
        "sound.equalizer",
        "Equalizer",
        "Opens the audio effects equalizer for bass and treble.",
        ["open the equalizer", "more bass", "adjust treble"],
        intent("android.media.action.DISPLAY_AUDIO_EFFECT_CONTROL_PANEL"),
        context=["headset", "app:media"],
    ),
    tool(
        "sound.output.switch",
        "Switch audio output",
        "Chooses where media plays: phone speaker, headphones or a Bluetooth speaker.",
        [
            "play through the speaker",
            "switch audio to my headphones",
            "send sound to the bluetooth speaker",
        ],
        intent("com.android.systemui.action.LAUNCH_MEDIA_OUTPUT_DIALOG"),
        context=["headset", "app:media"],
    ),
    tool(
        "sound.live_caption",
        "Live Caption",
        "Captions any speech playing on the phone, on screen, in real time.",
        ["live caption", "subtitles for everything", "caption this video automatically"],
        setting("Settings.Secure.ODI_CAPTIONS_ENABLED", 1),
        context=["app:video"],
    ),
    tool(
        "sound.adaptive_sound",
        "Adaptive sound",
        "Tunes the speaker's equalization to the room's acoustics.",
        ["adaptive sound", "optimize speaker for the room", "tune audio to my surroundings"],
        setting("Settings.Secure.ADAPTIVE_SOUND_ENABLED", 1),
    ),
    # --- Do Not Disturb and modes
    tool(
        "dnd.on",
        "Turn on Do Not Disturb",
        "Turns on Do Not Disturb so calls and notifications stay silent.",
        ["turn on do not disturb", "dnd on", "I don't want to be bothered"],
        settings(
            "VOICE_CONTROL_DO_NOT_DISTURB_MODE",
            extras={"android.settings.extra.do_not_disturb_mode_enabled": True},
        ),
        context=["night", "driving"],
    ),
    tool(
        "dnd.off",
        "Turn off Do Not Disturb",
        "Turns Do Not Disturb off so notifications and calls sound again.",
        ["turn off do not disturb", "dnd off", "let notifications through again"],
        settings(
            "VOICE_CONTROL_DO_NOT_DISTURB_MODE",
            extras={"android.settings.extra.do_not_disturb_mode_enabled": False},
        ),
        context=["morning"],
    ),
    tool(
        "dnd.for_duration",
        "Do Not Disturb for a while",
        "Turns on Do Not Disturb for a set number of minutes, then ends it automatically.",
        [
            "do not disturb for an hour",
            "silence everything for 30 minutes",
            "mute notifications until the meeting is over",
        ],
        settings(
            "VOICE_CONTROL_DO_NOT_DISTURB_MODE",
            extras={
                "android.settings.extra.do_not_disturb_mode_enabled": True,
                "android.settings.extra.do_not_disturb_mode_minutes": "{minutes}",
            },
        ),
        params=[p("minutes", "duration", "how long", required=True, lo=15, hi=720, unit="min")],
    ),
    tool(
        "dnd.settings",
        "Do Not Disturb settings",
        "Opens Do Not Disturb settings: who can reach you, which apps, schedules.",
        ["do not disturb settings", "configure dnd", "who can interrupt me"],
        settings_raw("android.settings.ZEN_MODE_SETTINGS", "Settings.ACTION_ZEN_MODE_SETTINGS"),
    ),
    tool(
        "dnd.priority",
        "Priority conversations and contacts",
        "Chooses which people and conversations can break through Do Not Disturb.",
        ["let my mom call me during dnd", "priority contacts", "allow starred contacts through"],
        settings("ZEN_MODE_PRIORITY_SETTINGS"),
    ),
    tool(
        "dnd.schedules",
        "Do Not Disturb schedules",
        "Opens automatic rules that turn on Do Not Disturb at set times or during events.",
        [
            "schedule do not disturb every night",
            "automatic quiet hours",
            "dnd during calendar events",
        ],
        settings("AUTOMATIC_ZEN_RULE_SETTINGS"),
        context=["evening"],
    ),
    tool(
        "dnd.alarms_only",
        "Alarms only",
        "Silences everything except alarms.",
        ["alarms only mode", "only let alarms ring", "total silence except my alarm"],
        api("NotificationManager.setInterruptionFilter", filter="INTERRUPTION_FILTER_ALARMS"),
        context=["night"],
    ),
    tool(
        "dnd.total_silence",
        "Total silence",
        "Blocks every sound and vibration, including alarms and media.",
        ["total silence", "block every sound including alarms", "complete quiet"],
        api("NotificationManager.setInterruptionFilter", filter="INTERRUPTION_FILTER_NONE"),
    ),
    tool(
        "dnd.bedtime.on",
        "Start Bedtime mode",
        "Starts Bedtime mode: greyscale screen, silenced phone and dimmed wallpaper.",
        ["bedtime mode on", "I'm going to sleep", "wind down mode"],
        api("ZenModeConfig.activateMode", mode="bedtime"),
        context=["night", "evening"],
    ),
    tool(
        "dnd.bedtime.off",
        "End Bedtime mode",
        "Ends Bedtime mode and restores colours and sounds.",
        ["end bedtime mode", "I'm awake now", "turn off wind down"],
        api("ZenModeConfig.deactivateMode", mode="bedtime"),
        context=["morning"],
    ),
    tool(
        "dnd.focus.on",
        "Start Focus mode",
        "Pauses distracting apps you choose until you end Focus mode.",
        ["focus mode on", "pause distracting apps", "help me concentrate"],
        api("ZenModeConfig.activateMode", mode="focus"),
    ),
    tool(
        "dnd.focus.off",
        "End Focus mode",
        "Ends Focus mode and unpauses the distracting apps.",
        ["focus mode off", "unpause my apps", "I'm done concentrating"],
        api("ZenModeConfig.deactivateMode", mode="focus"),
    ),
    tool(
        "dnd.driving",
        "Driving focus",
        "Silences notifications and auto-replies to messages while you drive.",
        [
            "driving mode do not disturb",
            "auto reply I'm driving",
            "silence texts while I'm behind the wheel",
        ],
        api("ZenModeConfig.activateMode", mode="driving"),
        context=["driving"],
    ),
    tool(
        "dnd.policy_access",
        "Do Not Disturb access for apps",
        "Manages which apps may change Do Not Disturb.",
        ["which apps can change do not disturb", "dnd access", "allow an app to control dnd"],
        settings("NOTIFICATION_POLICY_ACCESS_SETTINGS"),
    ),
    tool(
        "dnd.flip_to_shh",
        "Flip to Shhh",
        "Turns on Do Not Disturb whenever the phone is placed face down.",
        ["flip to shh", "silence the phone when face down", "flip over to mute"],
        setting("Settings.Secure.FLIP_TO_SHH", 1),
    ),
]
