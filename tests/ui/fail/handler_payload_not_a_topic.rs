use topicbus::handler;

#[handler]
async fn on_text(text: String) -> Result<(), std::io::Error> {
    println!("{text}");
    Ok(())
}

fn main() {}
