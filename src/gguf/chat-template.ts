// The value of tokenizer.chat_template that llama.cpp falls back to when a model ships none:
// ChatML. The engine renders chats of such models with it, and synthetic models carry it.
export const CHATML_TEMPLATE =
  "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
