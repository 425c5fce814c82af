"""Further phrasings per tool, kept apart so the tool definitions stay readable.

Written from each tool's meaning: indirect needs ("I can't hear the caller"), casual and
terse forms. `build()` appends them to the tool's `examples`. Lines: `id | phrase | phrase`.
"""

from __future__ import annotations

MORE = """
connectivity.wifi.on | reconnect me to my wireless network | I'm home, wifi back on
connectivity.wifi.off | wifi off | switch off wireless so I stay on 5g
connectivity.wifi.settings | wifi network list | I want to change which wifi I'm on
connectivity.wifi.panel | small popup to choose wifi | wifi chooser over this app
connectivity.wifi.connect | connect to a new wireless network
connectivity.wifi.connect | type in the wifi password for the library
connectivity.wifi.forget | delete a saved wifi network | don't connect to that network anymore
connectivity.wifi.share | give a visitor access to my wifi | qr code for our wireless password
connectivity.wifi.scan_qr | the router has a qr sticker, use it to connect
connectivity.wifi.scan_qr | join wireless by scanning
connectivity.wifi.ip_settings | wifi mac address | proxy settings for this network
connectivity.wifi.calling | calls over wireless internet | enable wifi calling on my sim
connectivity.internet.panel | internet toggles | fix my connection quickly
connectivity.network.reset | factory reset only the network settings
connectivity.network.reset | clear all wifi and bluetooth settings
connectivity.private_dns | private dns provider | block ads with a dns hostname
connectivity.bluetooth.on | bluetooth on | activate bluetooth for my watch
connectivity.bluetooth.off | bluetooth off | turn off bt, I'm not using headphones
connectivity.bluetooth.settings | manage bluetooth devices | pair a device
connectivity.bluetooth.connect | reconnect my earbuds | pair up with my headset that's already saved
connectivity.bluetooth.disconnect | stop the bluetooth connection with my earphones
connectivity.bluetooth.disconnect | disconnect bluetooth device
connectivity.bluetooth.unpair | forget a bluetooth device | delete the pairing with my old car
connectivity.bluetooth.rename | bluetooth device name | how my phone shows up to other devices
connectivity.bluetooth.battery | charge left on my headphones | earbud battery
connectivity.nfc.on | nfc on | switch on contactless so I can tap to pay
connectivity.nfc.off | nfc off | switch off contactless
connectivity.nfc.settings | open nfc options | contactless and nfc page
connectivity.nfc.panel | nfc toggle sheet | small nfc switch
connectivity.nfc.beam | tap phones together to share | beam a photo over nfc
connectivity.hotspot.on | hotspot on | let my friend use my data
connectivity.hotspot.off | hotspot off | nobody needs my hotspot anymore
connectivity.hotspot.settings | hotspot name and password | set up portable hotspot
connectivity.usb_tethering.on | internet for my computer over the usb cable | cable tethering
connectivity.airplane.on | airplane mode | cut every connection
connectivity.airplane.off | airplane mode off | get my signal back after the flight
connectivity.airplane.settings | flight mode settings | open airplane mode options
connectivity.mobile_data.on | mobile data on | use my cellular plan for internet
connectivity.mobile_data.off | mobile data off | cut cellular internet
connectivity.data_usage | how much mobile data is left | data consumption per app
connectivity.data_saver.on | data saver on | use less data in the background
connectivity.data_saver.off | data saver off | let apps use data freely
connectivity.roaming | allow data while travelling abroad | roaming on or off
connectivity.sim.settings | choose which sim uses data | change network type
connectivity.apn | apn settings | add an access point for my carrier
connectivity.wireless.settings | network and internet | connectivity settings
connectivity.vpn.settings | configure vpn | vpn profiles
connectivity.vpn.connect | vpn on | encrypt my traffic
connectivity.vpn.disconnect | vpn off | end the vpn session
connectivity.cast.settings | cast screen | show my screen on the big tv
connectivity.nearby_share | quick share | send something to a phone nearby
connectivity.usb.preferences | usb mode | transfer files to my pc with the cable
connectivity.auto_wifi | turn wifi back on automatically near home | smart wifi wakeup
display.brightness.up | increase brightness | screen is too dim
display.brightness.down | lower the brightness | reduce screen brightness
display.brightness.set | change brightness to 60 | screen brightness 20%
display.brightness.max | brightness to maximum | screen as bright as it gets
display.brightness.min | dimmest setting | brightness all the way down
display.brightness.auto_on | automatic brightness | brightness should follow the room light
display.brightness.auto_off | manual brightness | keep brightness fixed
display.dark_mode.on | dark mode | night theme for apps
display.dark_mode.off | light mode | disable dark theme
display.night_light.on | night light | eye comfort mode on
display.night_light.off | night light off | stop the yellow tint
display.night_light.settings | night light settings | blue light filter schedule
display.settings | display options | brightness, theme and font settings
display.timeout.set | screen sleep time | screen timeout setting
display.rotation.auto_on | auto rotate on | rotate the screen with the phone
display.rotation.lock | portrait lock | auto rotate off
display.rotation.settings | rotation settings | screen rotation options
display.font_size.set | text size | smaller font
display.display_size.set | display size and text | scale up the whole ui
display.refresh_rate.set | 120 hz mode | smooth display setting
display.always_on.on | always-on display | keep the lock screen clock visible
display.always_on.off | turn off always on display | screen fully dark when locked
display.screen_saver | screensaver | what shows on the charging dock
display.screen_saver.start | start screensaver | show the dream on the dock now
display.color_mode | screen color profile | vivid colors
display.wallpaper.set | wallpaper | change background
display.wallpaper.live | set a live wallpaper | wallpaper that moves
display.theme.colors | accent color | theme colors and icon style
display.lock_screen.settings | lock screen options | what appears on my lock screen
display.keep_awake | screen on while charging | never sleep when plugged in
display.screen_attention | screen stays on when I look at it | attention aware screen
display.one_handed | one hand mode | bring the top of the screen down
display.notch | cutout | how apps use the notch area
sound.volume.panel | volume panel | change volumes
sound.volume.unmute_all | unmute | restore all sounds
sound.ringer.silent | silent | no sound no vibration
sound.ringer.vibrate | vibrate mode | buzz instead of ring
sound.ringer.normal | normal sound mode | ringer on
sound.settings | sound and vibration settings | ringtone and volume settings
sound.ringtone.set | ringtone | choose a call tone
sound.notification_sound.set | notification tone | message sound
sound.alarm_sound.set | alarm ringtone | alarm tone
sound.vibration.settings | haptics | vibration intensity
sound.vibrate_on_ring | vibrate for calls | ring and vibrate
sound.touch_sounds.off | touch sounds off | mute tapping sounds
sound.spatial_audio | spatial audio | immersive sound for headphones
sound.equalizer | equalizer | sound effects settings
sound.output.switch | audio output | switch speakers
sound.live_caption | live caption | captions for any audio
sound.adaptive_sound | room adaptive sound | speaker tuned to the room
dnd.on | dnd | silence notifications and calls
dnd.off | end dnd | notifications back on
dnd.for_duration | dnd for 45 minutes | don't disturb until 3pm
dnd.settings | dnd settings | do not disturb exceptions
dnd.priority | dnd exceptions for people | starred contacts can call during dnd
dnd.schedules | dnd schedule | quiet hours schedule
dnd.alarms_only | only alarms | silence but keep alarms
dnd.total_silence | silence absolutely everything | no alarms no sounds
dnd.bedtime.on | bedtime mode | night mode for sleep
dnd.bedtime.off | bedtime off | stop bedtime mode
dnd.focus.on | focus mode | no distractions
dnd.focus.off | focus off | end focus
dnd.driving | driving do not disturb | don't show messages while driving
dnd.policy_access | do not disturb permissions | app access to dnd
dnd.flip_to_shh | face down mute | flip phone to silence
battery.saver.on | battery saver | low power mode
battery.saver.off | battery saver off | normal power mode
battery.saver.settings | power saving options | automatic battery saver
battery.extreme_saver | extreme power saving | super battery saver
battery.usage | battery usage | battery drain by app
battery.level | battery level | how charged is my phone
battery.charging_status | charging status | time until full
battery.percentage.show | battery percent in status bar | show battery number
battery.adaptive | adaptive battery | battery learns my apps
battery.optimization | battery optimization | unrestricted battery for an app
battery.adaptive_charging | adaptive charging | charge to full just before my alarm
battery.charge_limit | charge limit | stop charging before full
battery.health | battery health | battery condition
battery.settings | battery settings | battery menu
battery.background_restrict | restrict app battery | background restriction
battery.wireless_share | battery share | reverse charging
storage.settings | storage | storage breakdown
storage.free_up | free storage | clean up my phone
storage.clear_cache | clear cached data | remove cache
storage.sd_card | memory card | sd card options
storage.app_storage | app storage | clear app data
storage.smart_storage | smart storage | auto remove backed up photos
storage.all_files_access | all files permission | manage all files access
storage.large_files | large files | biggest files
storage.duplicates | duplicate files | remove duplicate copies
storage.unused_apps | unused apps | apps I never use
storage.volume_access | storage volume access | external drive access
storage.usb_drive | usb stick | flash drive files
security.settings | security | security options
security.safety_center | safety center | security status
security.screen_lock.set | screen lock | change lock screen password
security.fingerprint.add | fingerprint | new fingerprint
security.face_unlock | face recognition | face unlock setup
security.lock_now | lock | lock phone
security.lockdown | lockdown | require pin only
security.find_device | find my device | locate my lost phone
security.update | system update | security update
security.play_protect | virus scan | play protect scan
security.device_admin | device administrators | admin apps
security.app_pinning | screen pinning | app pinning
security.unknown_sources | unknown apps | sideload apps
security.smart_lock | extend unlock | trusted places
security.sim_lock | sim lock | sim pin code
security.encryption | encryption | credentials and certificates
security.passwords | passwords | password manager
security.autofill | autofill | autofill provider
security.private_space | private space | hidden apps
security.theft_protection | theft protection | anti theft lock
security.work_policy | work profile policy | what my company can see
security.authenticator | authenticator | one time code
privacy.settings | privacy | privacy menu
privacy.dashboard | privacy dashboard | recent sensor access by apps
privacy.permissions | permissions | all app permissions
privacy.app_permissions | app permissions for one app | permissions of this app
privacy.camera_access.off | camera access off | block the camera
privacy.camera_access.on | camera access on | allow the camera
privacy.mic_access.off | microphone access off | block the mic
privacy.mic_access.on | microphone access on | allow the microphone
privacy.clipboard_alerts | clipboard access notifications | alert on clipboard reads
privacy.ads | ad settings | advertising id
privacy.usage_access | usage access permission | apps with usage data
privacy.notification_access | notification read access | notification listeners
privacy.overlay | overlay permission | appear on top
privacy.modify_settings | change system settings permission | write settings permission
privacy.activity_controls | web and app activity | activity settings
privacy.delete_history | delete activity | clear recent searches
privacy.exact_alarms | alarms and reminders access | exact alarm permission
privacy.health_permissions | health data access | fitness data permissions
privacy.media_management | media management | manage media permission
privacy.indicators | privacy indicators | green dot
privacy.unused_permissions | auto revoke | remove unused app permissions
location.on | location on | turn location services on
location.off | location off | turn location services off
location.settings | location | location options
location.accuracy | location accuracy | precise location
location.app_access | location access by app | apps with location permission
location.current | my location | current position on the map
location.share | location sharing | live location to a friend
location.timeline | timeline | places I've been
location.emergency | emergency location | els
location.wifi_scanning | scanning for location | wifi scanning
location.time_zone | automatic time zone | time zone by location
location.find_friends | friend's location | where is my husband
accessibility.settings | accessibility | accessibility features
accessibility.talkback.on | talkback | screen reader on
accessibility.talkback.off | talkback off | screen reader off
accessibility.select_to_speak | select to speak | speak what I highlight
accessibility.magnification | screen magnifier | zoom anywhere
accessibility.color_inversion.on | color inversion | inverted colors
accessibility.color_inversion.off | color inversion off | normal colors
accessibility.color_correction | colour correction | daltonizer
accessibility.grayscale | grayscale | monochrome screen
accessibility.extra_dim.on | extra dim on | extra dark screen
accessibility.extra_dim.off | extra dim off | undo extra dim
accessibility.high_contrast_text | high contrast | outlined text
accessibility.bold_text | bold font | heavier text
accessibility.remove_animations | no animations | reduce motion
accessibility.mono_audio | mono | one channel audio
accessibility.audio_balance | balance | left right audio
accessibility.captions | caption appearance | subtitle size
accessibility.hearing_aids | hearing aids | hearing devices
accessibility.sound_amplifier | amplifier | hear better
accessibility.live_transcribe | transcribe | live captions of people talking
accessibility.sound_notifications | sound alerts | doorbell and alarm alerts
accessibility.switch_access | switch control | switches instead of touch
accessibility.voice_access | voice access | voice control
accessibility.menu | accessibility menu | big on screen menu
accessibility.touch_delay | long press timing | touch and hold delay
accessibility.flash_notifications | flash alerts | light flash on notifications
accessibility.large_pointer | big cursor | large mouse pointer
accessibility.tts | tts | speech output settings
accessibility.time_to_take_action | timeout for messages | toast duration
notifications.settings | notifications | notification settings page
notifications.app | app notifications | notifications for one app
notifications.channel | notification categories | notification channels
notifications.history | notification history | old notifications
notifications.clear_all | clear notifications | dismiss all
notifications.show | notification shade | open notifications
notifications.read | read notifications | my notifications aloud
notifications.snooze | postpone a notification | snoozing notifications
notifications.bubbles | bubbles | floating chat heads
notifications.lock_screen | lock screen notifications | private notifications
notifications.badges | badges | dots on icons
notifications.assistant | notification assistant | smart actions
notifications.cooldown | cooldown | gradually quieter notifications
notifications.emergency_alerts | emergency alerts | public safety alerts
notifications.conversations | conversations | priority chats
system.settings | settings | device settings
system.settings.search | settings search | search in settings
system.screenshot | screenshot | screen shot
system.screen_record | screen recorder | capture video of my screen
system.split_screen | side by side windows | two windows
system.recent_apps | overview | app switcher
system.home | home | main screen
system.back | back | return
system.power_menu | power button menu | power dialog
system.restart | restart | reboot now
system.power_off | shutdown | power down
system.quick_settings | quick toggles | control center
system.flashlight.on | flashlight | torch
system.flashlight.off | flashlight off | no torch
system.flashlight.brightness | torch brightness | flashlight level
system.about | about | phone info
system.date_time | date | time settings
system.developer | developer settings | adb debugging
system.reset_options | reset | erase all data
system.default_apps | default apps | default browser app
system.home_app | launcher | home app
system.apps.list | apps | all installed applications
system.app.info | app info | app details
system.app.uninstall | uninstall | remove app
system.app.open_by_default | link handling | open supported links
system.gestures | gestures | navigation mode
system.print | printer | print settings
system.users | users | multiple users
system.guest.on | guest | guest user
system.emergency_sos | sos | emergency sos settings
system.safety_info | emergency info | medical information
system.regulatory | regulatory labels | certifications
system.webview | webview | webview provider
system.assistant_settings | assistant | voice assistant settings
system.shortcuts | quick launch shortcuts | shortcuts
system.search_phone | search device | find on my phone
system.backup | backup | back up now
system.transfer | transfer | copy from my previous phone
input.language | system language | language settings
input.app_language | app language | language for one app
input.regional | regional settings | units and formats
input.keyboard | keyboard | on-screen keyboard
input.keyboard.languages | keyboard language | new keyboard layout
input.physical_keyboard | hardware keyboard | external keyboard layout
input.dictionary | dictionary | custom words
input.spell_checker | spell checker | spelling
input.voice_typing | voice typing | dictation
input.vibrate_on_keypress | key vibration | typing haptics
input.clipboard | clipboard | copied items
input.stylus | stylus | pen settings
accounts.add | add account | new account
accounts.sync | account sync | sync
accounts.google | google account | account settings
accounts.storage_plan | cloud storage | storage plan
accounts.remove | remove account | delete account from phone
accounts.work_profile.pause | work apps off | pause work profile
accounts.work_profile.resume | work apps on | resume work
accounts.passkeys | passkeys | credential provider
wellbeing.dashboard | screen time | usage today
wellbeing.app_timer | app timer | daily limit for an app
wellbeing.parental | family link | parental control
wellbeing.bedtime.settings | bedtime schedule | wind down schedule
wellbeing.heads_up | heads up | walking alert
wellbeing.unlocks | unlocks | pickups
clock.alarm.set | alarm for 7:30 | new alarm
clock.alarm.weekdays | weekday alarm | alarm monday through friday
clock.alarm.show | alarms | my alarm list
clock.alarm.dismiss | dismiss alarm | turn off the alarm that's ringing
clock.alarm.snooze | snooze alarm | a few more minutes
clock.alarm.delete_all | remove every alarm | clear alarms
clock.timer.set | timer | 15 minute timer
clock.timer.show | timers | time left
clock.timer.cancel | cancel timer | timer off
clock.timer.pause | pause timer | stop the timer for now
clock.timer.add_minute | plus one minute | extend timer by a minute
clock.stopwatch.start | stopwatch | start timer counting up
clock.stopwatch.stop | pause stopwatch | stop timing now
clock.stopwatch.lap | lap time | split
clock.stopwatch.reset | stopwatch reset | zero the stopwatch
clock.world.add | world clock city | add a time zone
clock.world.show | world times | clocks for other cities
clock.bedtime | sleep sounds and bedtime | bedtime in the clock app
clock.open | clock | alarm app
clock.exact_time | time | the time please
calendar.event.create | new event | add to calendar
calendar.event.all_day | all day event | full day event
calendar.event.recurring | repeating event | every week event
calendar.event.invite | meeting invite | invite people
calendar.today | today | today's events
calendar.date | events on a day | that day's calendar
calendar.next | next event | upcoming event
calendar.tomorrow | tomorrow | events tomorrow
calendar.event.edit | edit event | change an appointment time
calendar.event.delete | delete event | cancel appointment
calendar.free_slot | free time | availability
calendar.open | calendar | calendar app
calendar.week | this week | week agenda
calendar.accounts | calendar accounts | which calendars to show
calendar.birthdays | birthdays | upcoming birthday reminders
calendar.event.join | join meeting | meeting link
contacts.add | new contact | save number
contacts.show | contact | contact details
contacts.edit | edit contact | update contact
contacts.delete | delete contact | remove contact
contacts.open | contacts | phone book
contacts.favorite | favorite contact | starred contacts
contacts.share | share contact | send contact card
contacts.merge | merge contacts | duplicates in contacts
contacts.import | import contacts | load contacts
contacts.export | export contacts | contacts backup file
contacts.labels | contact groups | labels
contacts.search | search contacts | find contact
contacts.emergency | emergency contact | ice contact
contacts.birthday | contact birthday | birthday for a contact
phone.call | call | make a phone call
phone.dial | dialer | open dial pad with a number
phone.speaker_call | speaker call | call hands free on speaker
phone.video_call | video call | video chat
phone.redial | call back | return the missed call
phone.voicemail | voicemail | voice mailbox
phone.call_log | recent calls | call log
phone.answer | answer the phone | take the call
phone.end_call | end call | hang up the phone
phone.decline | decline call | reject with text
phone.mute_mic | mute call | mute the microphone during the call
phone.speaker | speaker | loudspeaker for the current call
phone.hold | hold | on hold
phone.keypad | dial pad during call | tones on the call
phone.block | block caller | block number
phone.blocked_list | blocked | unblock a number
phone.call_settings | phone settings | calling settings
phone.forward | forward incoming calls | redirect calls
phone.spam_filter | spam calls | caller id
phone.call_screen | call screen | screen unknown calls
phone.emergency | emergency | dial emergency number
phone.respond_sms | quick replies | decline messages
phone.default_dialer | default dialer | phone app choice
phone.number | my number | own phone number
phone.record_call | call recording | record call
messaging.sms.send | text message | send an sms
messaging.sms.read | read texts | new text messages
messaging.sms.reply | reply | quick reply to a text
messaging.mms.photo | picture message | mms
messaging.open | messages | texting app
messaging.conversation | conversation | chat thread
messaging.email.compose | new email | compose mail
messaging.email.inbox | inbox | my email
messaging.email.search | email search | find an email
messaging.share_text | share | share sheet for text
messaging.default_app | default sms | texting app choice
messaging.schedule | scheduled text | send later
messaging.delete_thread | delete conversation | delete chat
messaging.mark_read | mark read | read all messages
messaging.rcs | rcs | chat features
messaging.spam | spam texts | blocked messages
messaging.voice_message | voice message | audio message
messaging.location | text location | share location by text
productivity.note.create | new note | note
productivity.note.search | search notes | find note
productivity.list.add | add to list | list item
productivity.list.show | show list | my list
productivity.reminder.create | reminder | remind me
productivity.reminder.show | reminders | my reminders
productivity.task.add | new task | to-do
productivity.task.list | tasks | to do list
productivity.calculator | calculator | calculate
productivity.translate | translate | translation
productivity.translate.conversation | conversation mode | live interpreter
productivity.translate.camera | camera translation | translate a sign
productivity.recorder.start | voice recorder | record voice memo
productivity.recorder.list | recordings | voice memos
productivity.docs.new | new doc | blank document
productivity.sheets.new | new sheet | blank spreadsheet
productivity.scan_text | text from image | ocr
productivity.unit_convert | unit converter | convert units
camera.photo | photo | camera
camera.selfie | selfie | selfie camera
camera.video | video recording | video camera
camera.selfie_video | front camera video | vlog selfie mode
camera.timer_photo | self timer | delayed photo
camera.capture_for_app | take and attach a photo | photo to attach
camera.portrait | portrait | portrait photo
camera.night | night photo | dark scene photo
camera.panorama | panorama | pano
camera.slow_motion | slow motion | slow mo video
camera.time_lapse | timelapse | sped up video
camera.qr_scan | qr code | barcode scanner
camera.document_scan | document scanner | scan paper
camera.lens | visual search | identify with camera
camera.settings | camera options | camera preferences
camera.secure | lock screen camera | camera while locked
camera.zoom | zoom | camera zoom level
camera.flash | flash | camera flash
camera.switch | switch cameras | flip to selfie camera
camera.burst | burst | burst shots
camera.astro | astro | stars photo
camera.macro | macro | close up photo
gallery.open | photos | gallery app
gallery.last_photo | last photo | most recent picture
gallery.search | search photos | find pictures
gallery.videos | videos | my video library
gallery.screenshots | screenshots | screenshot folder
gallery.favorites | favorites | favourite pictures
gallery.share_last | share last photo | send most recent picture
gallery.edit | edit photo | photo editor
gallery.delete | delete photo | remove picture
gallery.trash | photo bin | deleted photos
gallery.album.create | new album | create album
gallery.album.open | album | photo album
gallery.slideshow | slideshow | photo slideshow
gallery.memories | memories | throwback photos
gallery.pick | photo picker | choose images
gallery.backup | photo backup | backup pictures
gallery.collage | collage | photo collage
gallery.cleanup | magic eraser | remove objects
media.play | play music | unpause
media.pause | pause music | pause playback
media.stop | stop music | stop playback
media.next | next | skip song
media.previous | previous | last track
media.restart | restart song | from the top
media.seek_forward | forward | skip ahead
media.seek_back | back 10 seconds | rewind a bit
media.shuffle.on | shuffle on | random songs
media.shuffle.off | shuffle off | in order
media.repeat.one | repeat one | loop song
media.repeat.all | repeat all | loop playlist
media.play.song | play a song | song by title
media.play.artist | play an artist | songs by a singer
media.play.album | play an album | full album
media.play.playlist | play a playlist | my playlist
media.play.genre | genre | mood music
media.play.radio | radio | fm station
media.play.podcast | podcast | latest episode
media.play.audiobook | audiobook | listen to a book
media.play.sleep_sounds | sounds to fall asleep to | rain noise
media.like | like | heart this song
media.dislike | dislike | skip and dislike
media.add_to_playlist | add to playlist | playlist add
media.now_playing | now playing | current song
media.identify | identify song | name that tune
media.lyrics | lyrics | song words
media.speed | speed | playback rate
media.sleep_timer | sleep timer | stop playing later
media.cast | cast | chromecast
media.play.video | watch a clip | watch a video
media.play.movie | movie | tv show
media.subtitles | subtitles | captions
media.pip | pip | floating video
media.queue | queue | up next
files.open | files | file browser
files.downloads | downloads | download folder
files.recent | recent | recently opened
files.search | file search | find file
files.documents | documents | pdfs
files.audio | audio | sound files
files.create_folder | folder | new directory
files.share | share file | send file
files.delete | delete file | remove file
files.zip | zip | archive files
files.unzip | unzip | extract archive
files.move_sd | sd card | move to memory card
files.safe_folder | safe folder | locked folder
files.trash | trash | deleted files
files.cloud | drive | cloud files
files.save_to_drive | upload | save to cloud storage
files.pdf_view | pdf | view pdf
files.apk | apk files | installers
browser.open_url | website | open a link
browser.open | browser | chrome browser
browser.incognito | incognito | private tab
browser.bookmarks | bookmarks | favorites sites
browser.history | history | visited pages
browser.clear_history | clear history | clear browser cache
browser.tabs | tabs | open pages
browser.reading_list | reading list | read later list
browser.downloads | browser downloads | downloaded from chrome
browser.translate_page | translate page | page in english
browser.read_aloud | read aloud | listen to the article
browser.find_in_page | find in page | search on page
navigation.drive | directions | drive to
navigation.walk | walk | walking route
navigation.bike | bike | cycling route
navigation.transit | transit | bus or train
navigation.home | navigate to my house | route home
navigation.work | work | route to work
navigation.avoid_tolls | avoid tolls | no highways
navigation.nearby | nearby | near me
navigation.search | map | show on map
navigation.traffic | traffic | traffic now
navigation.eta | eta | arrival time share
navigation.stop | stop directions | quit navigation
navigation.add_stop | add stop | detour
navigation.mute | mute directions | silent navigation
navigation.parking.save | parking | save parking
navigation.parking.find | my car | parked car
navigation.offline_maps | offline map | map without internet
navigation.street_view | street view | street level
navigation.distance | how far | travel time
navigation.saved | saved places | starred places
navigation.ride | taxi | ride
navigation.speed_limit | speed limit | speedometer on
navigation.satellite | satellite | aerial view
navigation.compass | compass | north
navigation.altitude | altitude | elevation
driving.mode.on | driving mode | car mode
driving.mode.off | driving mode off | leave car mode
driving.android_auto | android auto | car display
driving.auto_reply | driving auto reply | reply I'm driving
driving.crash_detection | crash detection | car crash
driving.fuel_prices | gas prices | cheap fuel
driving.ev_charger | ev charging | electric car charger
driving.car_key | car key | phone as car key
driving.read_messages | announce messages | read texts in the car
driving.commute | commute | travel to work time
wallet.open | wallet | cards
wallet.pay | pay | contactless payment
wallet.default_payment | tap to pay app | default wallet
wallet.boarding_pass | boarding pass | plane ticket
wallet.ticket | ticket | event pass
wallet.loyalty | loyalty card | membership card
wallet.send_money | send money | pay someone
wallet.request_money | request money | ask for money
wallet.add_card | add card | new payment card
wallet.transactions | transactions | payments history
wallet.transit | transit pass | metro card
wallet.id | id card | driver license
wallet.split_bill | split bill | share costs
wallet.stocks | stocks watchlist | my portfolio
health.workout.running | run | running workout
health.workout.walking | walk workout | walking
health.workout.biking | cycling | bike workout
health.workout.swimming | swim | swimming
health.workout.yoga | yoga | yoga workout
health.workout.strength_training | weights | strength workout
health.workout.hiking | hike | hiking workout
health.workout.stop | stop workout | workout done
health.steps | steps | step counter
health.heart_rate | heart rate | bpm
health.sleep | sleep | sleep stats
health.calories | calories | calories burned
health.weight_history | weight | weight trend chart
health.weight.log | log weight | weigh in
health.water.log | water | hydration
health.meal.log | food log | log food
health.blood_pressure.log | blood pressure | bp reading
health.glucose.log | glucose | blood sugar
health.medication.reminder | medication | pill reminder
health.cycle | period | menstrual cycle
health.breathe | breathe | breathing
health.meditate | meditation | mindfulness
health.connect | health app data | health connect settings
health.data.delete | delete health data | erase health data
health.goals | goals | step goal
health.sleep_tracking | sleep tracking | snore detection
health.hrv | hrv | recovery
health.oxygen | spo2 | oxygen
home.lights.on | lights on | turn on lights
home.lights.off | lights off | turn off lights
home.lights.dim | dim | lower the lights
home.lights.brighten | brighten | lights up
home.lights.color | light color | colored lights
home.lights.warm | warm white | soft warm light
home.thermostat.set | thermostat | set temperature
home.thermostat.up | heat up | warmer house
home.thermostat.down | cool down | cooler house
home.thermostat.mode | hvac mode | ac or heat
home.thermostat.status | indoor temperature | house temperature
home.lock.lock | lock door | door lock
home.lock.unlock | unlock door | door unlock
home.lock.status | lock status | door status
home.plug.on | plug on | smart outlet on
home.plug.off | plug off | smart outlet off
home.fan.on | fan | ceiling fan on
home.fan.speed | fan speed | faster fan
home.blinds.open | blinds open | open curtains
home.blinds.close | blinds closed | shut curtains
home.garage.open | garage open | open garage
home.garage.close | garage close | close the garage now
home.vacuum.start | vacuum | robot vacuum
home.vacuum.dock | dock | vacuum home
home.camera.view | camera feed | security camera
home.doorbell | doorbell | door camera
home.alarm.arm | arm | security system on
home.alarm.disarm | disarm | security system off
home.tv.on | tv on | television on
home.tv.off | tv off | television off
home.tv.input | tv input | hdmi
home.speaker.group | speaker group | all speakers
home.scene.good_night | good night routine | night scene
home.scene.leaving | leaving | away routine
home.scene.arriving | arriving | home routine
home.scene.movie | movie night | cinema mode
home.purifier.on | purifier | air cleaner
home.air_quality | air quality | humidity
home.washer.status | washer | laundry
home.sprinkler.run | sprinklers | watering
home.devices | smart home | devices
home.broadcast | broadcast | announcement
home.hot_water | hot water | water heater
home.energy | energy | electricity usage
apps.whatsapp.message | whatsapp text | message on whatsapp
apps.whatsapp.call | whatsapp voice call | whatsapp audio call
apps.whatsapp.status | whatsapp status | status updates
apps.telegram.message | telegram chat | telegram message
apps.instagram.profile | instagram account | insta profile
apps.instagram.camera | insta story | story camera
apps.youtube.search | youtube search | find a youtube video
apps.youtube.subscriptions | subscription feed | channels I follow
apps.youtube.watch_later | watch later | saved videos
apps.spotify.search | spotify search | find on spotify
apps.spotify.liked | liked songs | saved songs on spotify
apps.spotify.discover | discover weekly | weekly recommendations
apps.netflix.search | netflix search | find on netflix
apps.maps.explore | explore | things nearby
apps.play_store.search | play store search | find an app
apps.play_store.updates | app updates | update apps
apps.play_store.install | install app | get an app
apps.play_store.subscriptions | paid subscriptions | cancel subscription
apps.amazon.orders | amazon orders | package tracking
apps.amazon.search | amazon search | shop on amazon
apps.zoom.join | zoom meeting | join zoom
apps.meet.new | new meet | meet link
apps.teams.join | teams meeting | join teams
apps.uber_eats.order | food delivery | order food
apps.linkedin.jobs | jobs | job listings
apps.reddit.subreddit | subreddit | reddit community
apps.x.post | tweet | post
apps.duolingo.lesson | language lesson | duolingo practice
apps.kindle.continue | kindle book | continue reading my ebook
apps.news.briefing | headlines | morning news
apps.airbnb.trips | trips | reservations
apps.uber.ride_status | ride status | driver location
apps.discord.voice | discord voice | voice channel
apps.slack.status | slack status | status on slack
apps.outlook.calendar | outlook calendar | outlook meetings

dnd.on | silence my phone for now | mute calls and alerts until I say otherwise
dnd.on | switch do not disturb on | quiet mode on
dnd.off | disable do not disturb | I want my calls and alerts again
dnd.for_duration | quiet mode for the next hour | don't disturb me for 20 minutes
dnd.settings | what gets through when do not disturb is on | do not disturb rules
dnd.settings | let alarms and media through during dnd | customize do not disturb
dnd.priority | who can still call me in do not disturb | let my partner through when silenced
dnd.priority | allow calls from favourites in dnd | repeat callers can break through
dnd.schedules | silence the phone automatically every night | do not disturb on a timetable
dnd.bedtime.on | time for bed, start bedtime | going to sleep now
dnd.bedtime.off | morning, stop bedtime mode | wake up mode
dnd.focus.on | block social media while I work | pause my distracting apps for an hour
dnd.focus.off | unpause my apps | finish focus session
dnd.policy_access | give this app permission to change do not disturb
dnd.policy_access | apps allowed to control silencing
dnd.alarms_only | mute everything but the alarm | only my alarm may make sound
privacy.dashboard | show recent use of camera, mic and location by apps
privacy.dashboard | what did apps access in the last 24 hours
privacy.permissions | review what all my apps can access | permission list by type
privacy.app_permissions | what is this app allowed to access | change what one app can use
privacy.app_permissions | take away an app's access to my photos | permissions granted to an app
privacy.camera_access.off | stop every app from using the camera | kill camera access system wide
privacy.camera_access.on | let apps use the camera again | camera is blocked for apps, undo it
privacy.mic_access.off | stop every app from listening | cut microphone access system wide
privacy.mic_access.on | let apps use the microphone again | the microphone is blocked, undo it
privacy.ads | opt out of personalized ads | delete the advertising id
privacy.usage_access | which apps can see how I use my phone | allow usage statistics access
privacy.activity_controls | pause web and app activity | stop recording my youtube history
privacy.delete_history | wipe my recent google activity | erase the last hour of history
productivity.note.create | save a note saying buy a birthday gift | write a quick note
productivity.note.create | remember this in a note: locker 42 | new note with this text
productivity.note.search | look through my notes for the door code | open the note about the trip
productivity.list.add | add toothpaste to the list | put batteries on my shopping list
productivity.list.show | read me the shopping list | what do I still need to buy
productivity.reminder.create | remind me at 5 to pick up the kids
productivity.reminder.create | set a reminder for my dentist tomorrow
productivity.reminder.create | remind me when I get home to feed the cat
productivity.reminder.create | don't let me forget to pay rent
productivity.reminder.show | list my reminders for today | upcoming reminders
productivity.task.add | add 'call the plumber' to my tasks | new task due friday
productivity.task.add | put this on my to-do list | create a to-do item
productivity.task.list | what do I have to do today | open my task list
productivity.calculator | do some math | what is 240 divided by 7
productivity.translate | what's 'goodbye' in french | translate hello into korean
productivity.translate.conversation | translate a live conversation
productivity.translate.conversation | talk to someone who speaks another language
productivity.recorder.start | record a voice memo | record the meeting audio
productivity.recorder.list | listen to my voice memos | open my audio recordings
productivity.docs.new | write a new document | blank google doc
productivity.scan_text | grab the text in this picture | read the text from a screenshot
productivity.unit_convert | how many feet in a meter | convert pounds to kilograms
clock.alarm.set | alarm at 8 tomorrow morning | set my alarm for half past six
clock.alarm.show | when does my alarm go off | which alarms are on
clock.alarm.dismiss | turn off my next alarm | I'm up, cancel the alarm
clock.alarm.snooze | snooze it for five minutes | not yet, snooze
clock.timer.set | time 5 minutes for me | set a countdown for half an hour
clock.timer.show | how long until the timer ends | check my countdown
clock.timer.cancel | stop the countdown timer | kill the timer
clock.timer.add_minute | add one minute | a minute more on the timer
clock.stopwatch.start | start counting the time | begin stopwatch now
clock.stopwatch.stop | stop the stopwatch now | how long did that take
clock.exact_time | tell me the current time | what time is it now
calendar.event.create | put a meeting on my calendar for friday 3pm | book lunch with sam on tuesday
calendar.event.create | add an appointment next week | new calendar entry for the party on saturday
calendar.event.all_day | mark the whole day of june 3 as off | block the entire day
calendar.event.recurring | add a weekly event | repeat this every month
calendar.event.invite | schedule a meeting with anna and invite her | send an invite for the call
calendar.today | what's happening today | do I have anything today
calendar.date | what's on the 14th | show my schedule for next monday
calendar.next | what's next on my calendar | when do I have to be somewhere next
calendar.event.edit | push my meeting back an hour | change the time of my appointment
calendar.event.delete | remove the meeting from my calendar | delete that appointment
connectivity.bluetooth.settings | set up a new bluetooth device | pair new earbuds
connectivity.bluetooth.connect | connect to my car | reconnect the bluetooth speaker
connectivity.nfc.off | turn nfc off | stop contactless
connectivity.nearby_share | share files wirelessly with someone nearby
connectivity.nearby_share | send pictures to a phone next to me
storage.settings | how much space is free | how full is my phone
storage.free_up | clear space on my phone | phone storage is almost full
input.regional | show temperatures in celsius | use metric units
battery.optimization | don't let the system close my app in the background
battery.optimization | exclude an app from battery optimization
battery.background_restrict | stop an app draining battery in the background
battery.background_restrict | limit an app in the background
"""


def more_examples() -> dict[str, list[str]]:
    """`{tool id: [extra phrasings]}` parsed from MORE."""
    out: dict[str, list[str]] = {}
    for line in MORE.strip().splitlines():
        if not line.strip():
            continue
        tool_id, *phrases = (part.strip() for part in line.split("|"))
        out.setdefault(tool_id, []).extend(p for p in phrases if p)
    return out
