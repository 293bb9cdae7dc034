-- Voicemail on outbound calls: the assistant's voicemail message rendered with the call's
-- metadata when the call is placed (like the prompt and start instruction, so the session says
-- exactly what the missing-variables answer described), and the answering-machine detection's
-- verdict (human, machine_end_beep, fax, …) once the provider reports it.
ALTER TABLE calls ADD COLUMN rendered_voicemail_message TEXT;
ALTER TABLE calls ADD COLUMN answered_by TEXT;
